package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A container's terminal is made inside the container, from its own devpts instance,
// as runc's console socket does it: the slave then has a name there (tty(1) and
// ttyname(3) work), and the master travels to the monitor over a unix socket.

// consolePair is the socket pair a terminal's master travels through: the monitor
// keeps the first end, the process in the container gets the second.
func consolePair() (keep, give *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create console socket: %w", err)
	}
	// The sender's PID arrives translated into the receiver's PID namespace.
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("console socket credentials: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console"), nil
}

// takeTerminal opens a new terminal in the devpts instance mounted at /dev/pts (the
// container's, once the root is switched), makes its slave this process's stdio and
// controlling terminal (in a session of its own), and sends the master and its PID
// through the console socket sock.
func takeTerminal(sock int) error {
	if _, err := unix.Setsid(); err != nil && !errors.Is(err, unix.EPERM) { // EPERM: a leader already
		return fmt.Errorf("new session for the terminal: %w", err)
	}
	master, err := os.OpenFile("/dev/pts/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the container's /dev/pts/ptmx: %w", err)
	}
	defer master.Close()
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("find terminal: %w", err)
	}
	slave, err := unix.Open("/dev/pts/"+strconv.Itoa(n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open terminal: %w", err)
	}
	for std := 0; std <= 2; std++ {
		if err := unix.Dup2(slave, std); err != nil {
			unix.Close(slave)
			return fmt.Errorf("terminal as stdio: %w", err)
		}
	}
	unix.Close(slave)
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	oob := append(unix.UnixRights(fd), unix.UnixCredentials(&unix.Ucred{
		Pid: int32(unix.Getpid()), Uid: uint32(unix.Getuid()), Gid: uint32(unix.Getgid())})...) //nolint:gosec // IDs fit
	if err := unix.Sendmsg(sock, []byte{'t'}, oob, nil, 0); err != nil {
		return fmt.Errorf("send the terminal to the monitor: %w", err)
	}
	return unix.Close(sock)
}

// receiveTerminal takes the master a process in the container sent, and that
// process's PID in this PID namespace (it leads its session and process group).
func receiveTerminal(sock *os.File) (*os.File, int, error) {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4)+unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, 0, fmt.Errorf("receive the container's terminal: %w", err)
	}
	if n == 0 {
		return nil, 0, errors.New("the container's process ended before it sent its terminal")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, 0, fmt.Errorf("receive the container's terminal: bad control message: %w", err)
	}
	var master *os.File
	pid := 0
	for i := range msgs {
		if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil && len(fds) == 1 {
			master = os.NewFile(uintptr(fds[0]), "terminal")
		} else if cred, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			pid = int(cred.Pid)
		}
	}
	if master == nil {
		return nil, 0, errors.New("receive the container's terminal: no descriptor came")
	}
	return master, pid, nil
}
