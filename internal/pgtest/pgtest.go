// Package pgtest runs throwaway PostgreSQL servers for the tests and
// benchmarks of the history sinks: Debian's postgresql package, initdb in a
// temporary directory as the postgres user, pg_ctl start on a loopback
// address and a free port, stopped and removed at the end. It never touches
// the machine's own clusters (port 5432).
//
// Starting a server needs root (initdb refuses to run as root, so it runs
// as the postgres user through runuser). Where that is not possible,
// Start skips the test loudly, and fails it when AGENT_REQUIRE_FAULT_TESTS=1.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvRequire makes a missing PostgreSQL a test failure instead of a skip.
const EnvRequire = "AGENT_REQUIRE_FAULT_TESTS"

// Options shape a server.
type Options struct {
	// Durable keeps PostgreSQL's fsync on, as in production (benchmarks of
	// commit latency); tests leave it off, which is faster on a loaded
	// machine and loses nothing while the OS runs.
	Durable bool
}

// Server is one running (or stopped) throwaway PostgreSQL server.
type Server struct {
	// Host and Port are where it listens (TCP only).
	Host string
	Port int
	// Password is the postgres superuser's password (scram-sha-256 on TCP).
	Password string

	dir  string // owned by postgres: data/, the socket, the log, the password file
	bin  string // directory of initdb, pg_ctl
	opts Options

	mu      sync.Mutex
	running bool
}

// Available says why no server can be started here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("not root (initdb runs as the postgres user through runuser)")
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return errors.New("no postgres user (install Debian's postgresql package)")
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return errors.New("no runuser command")
	}
	if _, err := binDir(); err != nil {
		return err
	}
	return nil
}

// binDir finds the newest /usr/lib/postgresql/*/bin holding initdb.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no /usr/lib/postgresql/*/bin/initdb (install Debian's postgresql package)")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start starts a server for t and stops it in t.Cleanup. Without root or
// PostgreSQL it skips t loudly, or fails it with AGENT_REQUIRE_FAULT_TESTS=1.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if err := Available(); err != nil {
		Unavailable(t, err.Error())
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Logf("stop PostgreSQL: %v", err)
		}
	})
	return s
}

// Unavailable skips t with a warning on stderr, or fails it when
// AGENT_REQUIRE_FAULT_TESTS=1.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	msg := "POSTGRESQL TESTS NOT RUN: " + why + " (they need root and Debian's postgresql package; set " + EnvRequire + "=1 to make this a failure)"
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "WARNING:", msg)
	t.Skip(msg)
}

// New creates and starts a server; Close stops and removes it.
func New(opts Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	bin, _ := binDir()
	pg, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	// Short: the socket path (DIR/.s.PGSQL.PORT) must fit in 107 bytes.
	dir, err := os.MkdirTemp("/tmp", "pg")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, opts: opts, Password: randomHex(12)}
	fail := func(err error) (*Server, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(s.Password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	for _, p := range []string{dir, pw} {
		if err := os.Chown(p, uid, gid); err != nil {
			return fail(err)
		}
	}
	if out, err := s.runAs(2*time.Minute, filepath.Join(bin, "initdb"), "-D", s.dataDir(), "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pw, "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fail(fmt.Errorf("initdb: %v: %s", err, out))
	}
	// A port found free can be taken before the server binds it.
	for attempt := 1; ; attempt++ {
		s.Host = fmt.Sprintf("127.0.0.%d", 100+randomInt(150))
		if s.Port, err = freePort(s.Host); err != nil {
			return fail(err)
		}
		err = s.Start()
		if err == nil {
			return s, nil
		}
		if attempt == 3 {
			return fail(err)
		}
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// runAs runs a PostgreSQL program as the postgres user, in the server's
// directory (the caller's may not be readable by postgres).
func (s *Server) runAs(timeout time.Duration, prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", prog}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"}
	out, err := cmd.CombinedOutput()
	return bytes.TrimSpace(out), err
}

// Start starts the server again after Stop (New starts it the first time).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	o := fmt.Sprintf("-h %s -p %d -k %s -c max_connections=200", s.Host, s.Port, s.dir)
	if !s.opts.Durable {
		o += " -c fsync=off -c full_page_writes=off"
	}
	out, err := s.runAs(2*time.Minute, filepath.Join(s.bin, "pg_ctl"), "-D", s.dataDir(), "-l", filepath.Join(s.dir, "log"),
		"-w", "-t", "90", "-o", o, "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pg_ctl start on %s:%d: %v: %s\n%s", s.Host, s.Port, err, out, tail(log, 2000))
	}
	s.running = true
	return nil
}

// Stop stops the server (fast shutdown: clients are disconnected).
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	out, err := s.runAs(2*time.Minute, filepath.Join(s.bin, "pg_ctl"), "-D", s.dataDir(), "-m", "fast", "-w", "-t", "90", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	s.running = false
	return nil
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	err := s.Stop()
	if err != nil {
		// Last resort: the server must not outlive the test.
		_, _ = s.runAs(time.Minute, filepath.Join(s.bin, "pg_ctl"), "-D", s.dataDir(), "-m", "immediate", "-w", "stop")
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// Log returns the end of the server's log, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return tail(b, 4000)
}

// DSN is the connection string of database db ("postgres" when empty).
func (s *Server) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://postgres:%s@%s/%s?sslmode=disable&connect_timeout=10",
		s.Password, net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), db)
}

// CreateDB creates a database with a unique name and returns its DSN.
func (s *Server) CreateDB() (string, error) {
	name := "t" + randomHex(6)
	out, err := s.runAs(time.Minute, filepath.Join(s.bin, "createdb"), "-h", s.dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", name)
	if err != nil {
		return "", fmt.Errorf("createdb: %v: %s", err, out)
	}
	return s.DSN(name), nil
}

// MustCreateDB is CreateDB that fails t.
func (s *Server) MustCreateDB(t testing.TB) string {
	t.Helper()
	dsn, err := s.CreateDB()
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Psql runs one SQL command in database db through psql on the server's
// socket and returns its unaligned output.
func (s *Server) Psql(db, sql string) (string, error) {
	if db == "" {
		db = "postgres"
	}
	out, err := s.runAs(time.Minute, filepath.Join(s.bin, "psql"), "-h", s.dir, "-p", strconv.Itoa(s.Port), "-U", "postgres",
		"-d", db, "-v", "ON_ERROR_STOP=1", "-XAtqc", sql)
	if err != nil {
		return "", fmt.Errorf("psql: %v: %s", err, out)
	}
	return string(out), nil
}

// freePort returns a TCP port free on ip at the time of the call.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomInt(n int64) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return int(v.Int64())
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
