package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at link time for releases:
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/agent
//
// Without them, both come from the build info Go embeds: the module
// version ("(devel)" for a build from a work tree) and the VCS revision.
var (
	version string
	commit  string
)

// buildVersion is what `agent version` reports.
type buildVersion struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Modified bool   `json:"modified,omitempty"`
	Time     string `json:"time,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// readVersion combines the link-time variables and the build info.
func readVersion() buildVersion {
	v := buildVersion{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Go = bi.GoVersion
		if v.Version == "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true" && commit == ""
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

// String is the one-line form: "agent 1.2.0 (commit 3f2a..., go1.26.8 linux/amd64)".
func (v buildVersion) String() string {
	c := v.Commit
	if v.Modified {
		c += ", modified"
	}
	return fmt.Sprintf("agent %s (commit %s, %s %s)", v.Version, c, v.Go, v.Platform)
}

func newVersionCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of this binary",
		Long: `Print the version, the commit it was built from and the Go version. A
release build sets them with -ldflags "-X main.version=V -X main.commit=C";
otherwise they come from the build information Go embeds in the binary
("(devel)" for a build from a work tree, the commit when built in a git
checkout).`,
		Example: `  agent version
  agent version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := readVersion()
			switch out {
			case "text":
				fmt.Fprintln(cmd.OutOrStdout(), v)
			case "json":
				b, _ := json.Marshal(v)
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			default:
				return failf("-o %q: want text or json", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "text", "output `FORMAT`: text or json")
	return cmd
}
