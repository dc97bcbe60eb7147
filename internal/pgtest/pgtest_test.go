package pgtest

import (
	"strings"
	"testing"
)

func TestServerStartStop(t *testing.T) {
	s := Start(t, Options{})
	dsn := s.MustCreateDB(t)
	db := dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]
	out, err := s.Psql(db, "select 1+1")
	if err != nil || out != "2" {
		t.Fatalf("psql: %q %v", out, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Psql(db, "select 1"); err == nil {
		t.Fatal("psql works on a stopped server")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Psql(db, "select 2"); err != nil || out != "2" {
		t.Fatalf("after restart: %q %v", out, err)
	}
}
