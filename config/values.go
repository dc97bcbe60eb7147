package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// parseDuration parses a Go duration that may start with whole days:
// "30s", "1h30m", "7d", "1d12h". It must be positive.
func parseDuration(v string) (time.Duration, error) {
	d, err := parseDurationDays(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 30s, 5m, 7d)", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", v)
	}
	return d, nil
}

var daysRe = regexp.MustCompile(`^([0-9]+)d(.*)$`)

func parseDurationDays(v string) (time.Duration, error) {
	m := daysRe.FindStringSubmatch(v)
	if m == nil {
		return time.ParseDuration(v)
	}
	days, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || days > math.MaxInt64/int64(24*time.Hour) {
		return 0, errors.New("out of range")
	}
	d := time.Duration(days) * 24 * time.Hour
	if m[2] == "" {
		return d, nil
	}
	rest, err := time.ParseDuration(m[2])
	if err != nil || rest < 0 || rest > math.MaxInt64-d {
		return 0, errors.New("bad duration")
	}
	return d + rest, nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// parseSize parses a positive byte size: "1048576", "256MiB", "1 GB".
func parseSize(v string) (int64, error) {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(v[i:]))]
	n, err := strconv.ParseInt(v[:i], 10, 64)
	if i == 0 || !ok || err != nil {
		return 0, fmt.Errorf("%q is not a size (like 256MiB, 1GB, 4096)", v)
	}
	if n <= 0 {
		return 0, fmt.Errorf("%q: must be positive", v)
	}
	if n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q: too large", v)
	}
	return n * unit, nil
}

// parseBool accepts true/false, yes/no, on/off, 1/0.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true or false)", v)
}

// parsePort parses a TCP/UDP port number, 0 to 65535.
func parsePort(v string) (int, error) {
	p, err := strconv.Atoi(v)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port number", v)
	}
	return p, nil
}

// checkHostPort checks "host:port" with a non-empty host and a port 1-65535.
func checkHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not a host:port address", v)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: %q is not a port number", v, port)
	}
	return nil
}

// validHostName reports whether h is a DNS host name: labels of letters,
// digits and "-", separated by dots.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// isLoopback reports whether host names only the local machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitList splits a word list on blanks and commas.
func splitList(v string) []string {
	f := strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t'
	})
	if len(f) == 0 {
		return nil
	}
	return f
}

var (
	nameRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	eventIDRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// ValidName reports whether s is a safe name for a node, a service or a
// hook: a letter or digit, then letters, digits, "-", "_" and ".".
func ValidName(s string) bool { return len(s) <= 253 && nameRe.MatchString(s) }

// checkNames checks a list of node names, "*" allowed alone when star.
func checkNames(list []string, star bool) error {
	seen := map[string]bool{}
	for _, n := range list {
		if n == "*" && star {
			if len(list) > 1 {
				return errors.New(`"*" (all nodes) must stand alone`)
			}
			continue
		}
		if !ValidName(n) {
			return fmt.Errorf("%q is not a valid node name", n)
		}
		if seen[n] {
			return fmt.Errorf("%q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}
