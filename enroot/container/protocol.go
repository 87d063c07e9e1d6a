package container

// The protocol between the daemon, the monitor (enroot-cri-shim), the container's init
// and the exec stage, in one place: the descriptors each hands the next, the files of a
// bundle, and the monitor's control requests. docs/internals.md describes it for
// operators.

// Descriptors the daemon hands the monitor: the one on which the monitor tells the
// daemon that the container is created ("ok PID") or why it is not ("error: …"), and
// the sealed copy of the binary the init runs from.
const (
	shimReadyFd  = 3
	shimSealedFd = 4
)

// Descriptors the monitor hands the container's init.
const (
	initSyncFd    = 3 // init writes "ready ENV\n" (ENV: the final environment, JSON) or "error: …\n"; closes on exec
	initStartFd   = 4 // init reads one byte: it is in its cgroup, go on; then another: start now
	initConfigFd  = 5 // the init's Config, JSON
	initConsoleFd = 6 // with a terminal: where the init sends the terminal's master
	initRootFd    = 7 // with a user namespace: the ID-mapped root to attach; mount sources follow
)

// Descriptors of the exec helper and stage: the sealed binary (the stage runs from
// it inside the container) and the exec's description, JSON in an anonymous file
// (an environment variable would limit its size).
const (
	execBinaryFd  = 3
	execSpecFd    = 4
	execNsenterFd = 5 // a sealed copy of util-linux's nsenter
	execConsoleFd = 6 // with a terminal: where the stage sends the terminal's master
)

// Files of a bundle (the container's directory under the state directory).
const (
	// bundleConfigFile is the container's Config, written by the daemon at create.
	bundleConfigFile = "config.json"
	// shimPidFile and initPidFile hold the monitor's and the init's PIDs.
	shimPidFile = "shim.pid"
	initPidFile = "init.pid"
	// exitFile is the container's Exit, written by the monitor as the first process ends.
	exitFile = "exit.json"
	// environFile holds the environment the container's command got (after the
	// hooks), as JSON; execs take it.
	environFile = "environ.json"
	// startedFile holds the time the container's command started (JSON), written by
	// the monitor once the init executed it.
	startedFile = "started.json"
	// controlSocket is the monitor's control socket: a filesystem socket in the
	// root-only state directory, out of every container's reach (abstract sockets
	// belong to a network namespace, which host-network pods share; containerd's
	// CVE-2020-15257).
	controlSocket = "control.sock"
)

// Control requests, one line each on controlSocket; the monitor answers only peers with
// uid 0.
const (
	// reqStart releases the init into the command: answerOK, or an error (the command
	// could not be executed). A second one gets the first one's answer.
	reqStart = "start"
	// reqAttach turns the connection into an attachment: framed output (frameStdout
	// or frameStderr, a big-endian uint32 length, the data) until the container
	// ends; the client's bytes go to stdin.
	reqAttach = "attach"
	// reqResize, followed by " WIDTH HEIGHT", sets the terminal's size.
	reqResize = "resize"
	// reqReopenLog reopens the CRI log at its path (the kubelet rotated it).
	reqReopenLog = "reopen-log"
)

// Answers: of the monitor to the daemon's create and to control requests, and of the
// init to the monitor.
const (
	answerOK    = "ok"
	errorPrefix = "error: "
	readyPrefix = "ready "
)

// Frames of an attachment's output.
const (
	frameStdout byte = 1
	frameStderr byte = 2
)
