package agent

// HoldStore holds the cluster-data store's lock, as a deadlocked loop
// would, until release is closed; held is closed once the lock is taken.
func (a *Agent) HoldStore(held chan<- struct{}, release <-chan struct{}) {
	_, _ = a.store.SnapshotWith(func() error {
		close(held)
		<-release
		return nil
	})
}
