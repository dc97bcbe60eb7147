// Package proc runs the commands the agent starts for its users: hook
// commands, service check/start/stop commands and trigger commands. They
// all run the same way.
//
//   - No shell: Argv[0] is the program, the rest its arguments. A program
//     named without a slash is looked up in the PATH of the command's own
//     environment (absolute directories only: never the current one).
//   - Its own process group, so that what it starts can be stopped with it.
//   - Stdin from bytes (empty when none); stdout and stderr captured, the
//     first OutputLimit bytes of each kept and the rest read and counted, so
//     a chatty command never blocks on a full pipe nor fills the memory.
//   - At its timeout, or when the caller's context ends, the whole group
//     gets SIGTERM, then SIGKILL after KillGrace. On Linux the leader is
//     left unreaped until then, so a member that outlives it is still
//     found by the group id (which a reused pid cannot take).
//   - Once the command exited, Run waits at most PipeWait for its stdout and
//     stderr to close: a background process it left may hold them open.
//   - A clean environment: PATH (DefaultPath when the agent has none),
//     HOME, LANG and TZ from the agent's, plus the caller's own variables
//     (AGENT_EVENT_ID... for hooks, a service's `env =`, AGENT_TRIGGER...
//     for triggers). Nothing else of the agent's environment passes:
//     not AGENT_TOKEN, not NOTIFY_SOCKET, not LISTEN_FDS or LISTEN_PID.
//
// Run returns once the command and the group leader are gone. It starts two
// goroutines per command (the one of os/exec that copies the output and one
// that waits for the exit) and ends them before it returns.
package proc
