package triggers

// Log attribute keys.
const (
	keyTrigger  = "trigger"
	keyKey      = "key"
	keyOutcome  = "outcome"
	keyReason   = "reason"
	keyFile     = "file"
	keyErr      = "err"
	keyCount    = "count"
	keySeq      = "seq"
	keyAttempt  = "attempt"
	keyDuration = "duration"
	keyDetail   = "detail"
)
