package events

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Config.
const (
	DefaultRingSize     = 16384
	DefaultRingBytes    = 64 << 20
	DefaultSegmentBytes = 16 << 20
	DefaultMaxBytes     = 256 << 20
	DefaultMaxAge       = 7 * 24 * time.Hour
	DefaultMaxLag       = 8192
)

// syncInterval is how often the journal is fsynced. Writes go to the OS at
// once, so a killed process loses nothing; the interval bounds what a power
// loss can take.
const syncInterval = time.Second

// Config says where the bus keeps its journal and how much history it
// retains. The zero value is a memory-only bus with the defaults.
type Config struct {
	// Dir is the journal directory, created 0700 when missing. "" keeps
	// records in memory only (tests, tools).
	Dir string
	// RingSize is how many of the newest records are kept in memory for
	// subscribers; 0 means DefaultRingSize.
	RingSize int
	// RingBytes bounds the memory of the ring: the oldest records leave it
	// while their encodings add up to more (the newest always stays);
	// 0 means DefaultRingBytes.
	RingBytes int64
	// SegmentBytes: a journal file is rotated once it is at least this big;
	// 0 means DefaultSegmentBytes.
	SegmentBytes int64
	// MaxBytes bounds the journal's total size; the oldest segments are
	// deleted on rotation while it is exceeded, but never the active one.
	// 0 means DefaultMaxBytes; <0 disables the bound.
	MaxBytes int64
	// MaxAge: on rotation, segments whose newest record is older than this
	// are deleted. 0 means DefaultMaxAge; <0 disables the bound.
	MaxAge time.Duration
	// MaxLag is the default lag limit, in records, of non-durable
	// subscriptions; 0 means DefaultMaxLag.
	MaxLag int
	// Now is the clock that stamps records and ages segments; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives the bus's logs under component=events; nil means
	// slog.Default().
	Logger *slog.Logger

	// createFile opens a new segment file; tests replace it to simulate a
	// failing disk when they run as root (where chmod does not stop writes).
	createFile func(path string) (segmentFile, error)
	// reserveBlock is how many seqs are reserved at a time in the seq
	// mark; 0 means defaultReserveBlock.
	reserveBlock uint64
}

// defaultReserveBlock is how many seqs the journal reserves at a time: the
// most a restart after an unclean stop skips. The next block is reserved,
// by the fsync goroutine, when half of the current one is used.
const defaultReserveBlock = 1 << 16

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.RingSize < 0 {
		errs = append(errs, fmt.Errorf("events config: RingSize %d is negative", c.RingSize))
	}
	if c.RingBytes < 0 {
		errs = append(errs, fmt.Errorf("events config: RingBytes %d is negative", c.RingBytes))
	}
	if c.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("events config: SegmentBytes %d is negative", c.SegmentBytes))
	}
	if c.MaxLag < 0 {
		errs = append(errs, fmt.Errorf("events config: MaxLag %d is negative", c.MaxLag))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.RingBytes == 0 {
		c.RingBytes = DefaultRingBytes
	}
	if c.reserveBlock == 0 {
		c.reserveBlock = defaultReserveBlock
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxLag == 0 {
		c.MaxLag = DefaultMaxLag
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.createFile == nil {
		c.createFile = createSegmentFile
	}
	return c
}

// Log attribute keys.
const (
	keyComponent = "component"
	keyErr       = "err"
	keyDir       = "dir"
	keyFile      = "file"
	keySeq       = "seq"
	keyEpoch     = "epoch"
	keyOldEpoch  = "old_epoch"
	keyReason    = "reason"
	keyCount     = "count"
	keyOffset    = "offset"
	keyFrom      = "from"
	keyTo        = "to"
)
