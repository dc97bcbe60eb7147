package heartbeat

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"agent/internal/testutil"
	"agent/monitor"
)

// FuzzReceive feeds any bytes to the two parsers of what peers send: user
// messages (receive) and push/pull state (MergeRemoteState). Neither may
// panic, and the node must keep its own data whatever it is sent.
// Seeds: the messages below, and testdata/fuzz/FuzzReceive.
func FuzzReceive(f *testing.F) {
	data := json.RawMessage(`{"gen":3,"status":"idle","frozen":0,"labels":{"zone":"a"},"services":{}}`)
	ops := json.RawMessage(`[{"op":"replace","path":"/frozen","value":1}]`)
	for _, m := range [][]byte{
		encode(msgDelta, deltaMsg{Node: "n2", Boot: "b1", Base: 2, Gen: 3, Ops: ops}),
		encode(msgDelta, deltaMsg{Node: "n2", Boot: "b1", Base: 0, Gen: 1, Ops: json.RawMessage(`[{"op":"add","path":"/x/y/z","value":{}}]`)}),
		encode(msgFullReq, fullReqMsg{From: "n2", Of: "fz", Why: "gap"}),
		encode(msgFull, fullMsg{Node: "n2", Boot: "b1", Gen: 3, Data: data}),
		encode(msgState, fullMsg{Node: "n3", Boot: "b2", Gen: 1, Data: data}),
		encode(msgOrder, Order{From: "n2", Target: "fz", Action: "freeze"}),
		encode(msgLeave, leaveMsg{Node: "n2"}),
		encode(msgDigest, digestMsg{Node: "n2", Digest: monitor.Digest{Boot: "b1", Gen: 9, Hash: 7},
			More: []nodeDigest{{Node: "n3", Digest: monitor.Digest{Boot: "b2", Gen: 4}}}}),
		{msgDelta},
		[]byte("f{\"n\":1}"),
	} {
		f.Add(m)
	}
	st, err := monitor.New(monitor.Config{Name: "fz", ClusterName: "test", Publish: func(string, string, json.RawMessage) {}, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	h, err := New(Config{Name: "fz", ClusterName: "test", BindAddr: "127.0.0.1", BindPort: 0, Profile: "local",
		ForgetAfter: time.Hour, Tune: testutil.FastTimings, Logger: quietLogger()}, st)
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		<-done
		_ = h.Close()
	})
	f.Fuzz(func(t *testing.T, buf []byte) {
		_, before, _ := st.Local()
		h.receive(append([]byte(nil), buf...))
		(*delegate)(h).MergeRemoteState(buf, false)
		if _, after, _ := st.Local(); string(after) != string(before) {
			t.Fatalf("a message from outside changed this node's own data:\n%s\n%s", before, after)
		}
	})
}
