package imagesocket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Operations a Request may ask for.
const (
	OpGet     = "get"     // a Slurm job step's image, as the pyxis importer's `get`
	OpRelease = "release" // the end of a step's (or job's) use of its images
	OpImport  = "import"  // a squashfs file as an image (root only)
	OpHolds   = "holds"   // the images job steps hold (root only)
)

// Limits of the protocol.
const (
	maxRequest     = 64 << 10
	maxConnections = 64
	requestTimeout = 30 * time.Second
	progressEvery  = 2 * time.Second
)

// Request is what a client asks.
type Request struct {
	Op string `json:"op"`
	// URI is an Enroot image URI (get).
	URI string `json:"uri,omitempty"`
	// Job and Step are the Slurm job and step IDs (get, release; release without a
	// step releases every step of the job).
	Job  string `json:"job,omitempty"`
	Step string `json:"step,omitempty"`
	// UID is whose job to release; only root may name another user's (the epilog).
	UID *uint32 `json:"uid,omitempty"`
	// Username and Password are the caller's own registry credentials, from their
	// Enroot credentials file (get).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Name is the image name to import as (import; the file is the attached
	// descriptor).
	Name string `json:"name,omitempty"`
}

// Reply is one message of the answer.
type Reply struct {
	Progress string `json:"progress,omitempty"`
	// The result.
	Path     string     `json:"path,omitempty"`
	Image    string     `json:"image,omitempty"`
	Names    []string   `json:"names,omitempty"`
	Released int        `json:"released,omitempty"`
	Holds    []HoldInfo `json:"holds,omitempty"`
	// Error and Code (an errdefs kind's name) when the request failed.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// HoldInfo is one link a job step holds.
type HoldInfo struct {
	UID   uint32 `json:"uid"`
	Job   string `json:"job"`
	Step  string `json:"step"`
	Image string `json:"image"`
	Path  string `json:"path"`
}

// Server answers the image socket.
type Server struct {
	Store *image.Store
	// ShareWithJobs lets users other than root get images for their jobs
	// (images.share_with_jobs).
	ShareWithJobs bool
	Log           *slog.Logger
	slots         chan struct{}
	once          sync.Once
}

// Serve answers connections on l until it is closed.
func (s *Server) Serve(l *net.UnixListener) error {
	s.once.Do(func() { s.slots = make(chan struct{}, maxConnections) })
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		select {
		case s.slots <- struct{}{}:
			go func() {
				defer func() { <-s.slots }()
				s.serve(c)
			}()
		default:
			_ = send(c, Reply{Error: "the image socket is busy; try again", Code: kindName(errdefs.ErrUnavailable), Done: true})
			_ = c.Close()
		}
	}
}

// peer is who is on the other end of a connection.
type peer struct{ uid, gid, pid uint32 }

func (s *Server) serve(c *net.UnixConn) {
	defer func() { _ = c.Close() }()
	who, err := peerOf(c)
	if err != nil {
		s.Log.Warn("image socket: no peer credentials", "error", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	req, file, err := readRequest(c)
	if file != nil {
		defer file.Close()
	}
	if err != nil {
		_ = send(c, failure(err))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	log := s.Log.With("op", req.Op, "uid", who.uid, "pid", who.pid)

	// The request is cancelled when the client goes away (a killed srun).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		buf := make([]byte, 1)
		_, _ = c.Read(buf)
		cancel()
	}()

	reply, err := s.handle(ctx, c, who, req, file)
	if err != nil {
		log.Info("image socket request failed", "uri", req.URI, "job", req.Job, "step", req.Step, "error", err)
		_ = send(c, failure(err))
		return
	}
	log.Info("image socket request", "uri", req.URI, "job", req.Job, "step", req.Step, "image", reply.Image, "path", reply.Path)
	reply.Done = true
	_ = send(c, reply)
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn, who peer, req Request, file *os.File) (Reply, error) {
	if req.Op != OpImport && file != nil {
		return Reply{}, fmt.Errorf("op %q takes no file descriptor: %w", req.Op, errdefs.ErrInvalidArgument)
	}
	switch req.Op {
	case OpGet:
		if who.uid != 0 && !s.ShareWithJobs {
			return Reply{}, fmt.Errorf("this node's enroot-cri does not serve images to Slurm jobs (images.share_with_jobs is false): %w",
				errdefs.ErrPermissionDenied)
		}
		return s.get(ctx, c, who, req)
	case OpRelease:
		uid := who.uid
		if req.UID != nil && *req.UID != who.uid {
			if who.uid != 0 {
				return Reply{}, fmt.Errorf("uid %d may release only its own jobs: %w", who.uid, errdefs.ErrPermissionDenied)
			}
			uid = *req.UID
		}
		n, err := s.Store.ReleaseJob(image.JobStep{UID: uid, Job: req.Job, Step: req.Step})
		return Reply{Released: n}, err
	case OpImport:
		if who.uid != 0 {
			return Reply{}, fmt.Errorf("only root may import images: %w", errdefs.ErrPermissionDenied)
		}
		if file == nil {
			return Reply{}, fmt.Errorf("import needs the squashfs file's descriptor: %w", errdefs.ErrInvalidArgument)
		}
		img, err := s.Store.Import(ctx, file, req.Name)
		if err != nil {
			return Reply{}, err
		}
		return Reply{Image: img.ID, Names: img.RepoTags}, nil
	case OpHolds:
		if who.uid != 0 {
			return Reply{}, fmt.Errorf("only root may list holds: %w", errdefs.ErrPermissionDenied)
		}
		var out Reply
		for _, h := range s.Store.JobHolds() {
			out.Holds = append(out.Holds, HoldInfo{UID: h.Step.UID, Job: h.Step.Job, Step: h.Step.Step, Image: h.Image, Path: h.Path})
		}
		return out, nil
	default:
		return Reply{}, fmt.Errorf("op %q is not known; allowed: get, release, import, holds: %w", req.Op, errdefs.ErrInvalidArgument)
	}
}

// get pulls the image a job step asks for with the caller's own credentials (or
// none), so that the registry decides for this user as it would for `enroot import`:
// an image the store holds is handed out only when the user's own access reaches its
// manifest. Then the step gets its link.
func (s *Server) get(ctx context.Context, c *net.UnixConn, who peer, req Request) (Reply, error) {
	js := image.JobStep{UID: who.uid, GID: who.gid, Job: req.Job, Step: req.Step}
	if err := js.Validate(); err != nil {
		return Reply{}, err
	}
	uri, err := enroot.ParseURI(req.URI)
	if err != nil {
		return Reply{}, err
	}
	img, err := s.Store.Pull(ctx, uri.Reference(), image.PullOptions{
		Auth:             image.Auth{Username: req.Username, Password: req.Password},
		ProgressInterval: progressEvery,
		OnProgress: func(p image.Progress) {
			_ = send(c, Reply{Progress: fmt.Sprintf("pulling %s: %d of %d layers, %.1f MB in %s",
				p.Image, p.LayersDone, p.Layers, float64(p.Bytes)/1e6, p.Elapsed.Round(time.Second))})
		},
	})
	if err != nil {
		return Reply{}, err
	}
	if img.AllRoot == nil || !*img.AllRoot {
		_ = send(c, Reply{Progress: "making the Enroot layout of " + img.ID + " (first use by a job)"})
	}
	path, err := s.Store.HandToJob(ctx, img.ID, js)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Path: path, Image: img.ID}, nil
}

func peerOf(c *net.UnixConn) (peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if cerr != nil {
		return peer{}, cerr
	}
	return peer{uid: cred.Uid, gid: cred.Gid, pid: uint32(cred.Pid)}, nil //nolint:gosec // a pid is positive
}

// readRequest reads the request message and the descriptor sent with it, if any.
func readRequest(c *net.UnixConn) (Request, *os.File, error) {
	buf := make([]byte, maxRequest+1)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return Request{}, nil, fmt.Errorf("read request: %w", err)
	}
	file, ferr := takeFile(oob[:oobn])
	switch {
	case ferr != nil:
		return Request{}, file, ferr
	case flags&unix.MSG_TRUNC != 0 || n > maxRequest:
		return Request{}, file, fmt.Errorf("request is larger than %d bytes: %w", maxRequest, errdefs.ErrInvalidArgument)
	case flags&unix.MSG_CTRUNC != 0:
		return Request{}, file, fmt.Errorf("request carries more than one descriptor: %w", errdefs.ErrInvalidArgument)
	}
	var req Request
	dec := json.NewDecoder(strings.NewReader(string(buf[:n])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, file, fmt.Errorf("request is not valid JSON of this protocol: %w", errdefs.WithKind(err, errdefs.ErrInvalidArgument))
	}
	return req, file, nil
}

// takeFile returns the one descriptor of a control message and closes any others.
func takeFile(oob []byte) (*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("read request descriptors: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) == 0 {
		return nil, nil
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	unix.CloseOnExec(fds[0])
	f := os.NewFile(uintptr(fds[0]), "descriptor sent by the client")
	if len(fds) > 1 {
		return f, fmt.Errorf("request carries %d descriptors; at most one: %w", len(fds), errdefs.ErrInvalidArgument)
	}
	return f, nil
}

func send(c *net.UnixConn, r Reply) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_ = c.SetWriteDeadline(time.Now().Add(requestTimeout))
	_, err = c.Write(data)
	return err
}

func failure(err error) Reply {
	return Reply{Error: err.Error(), Code: kindName(err), Done: true}
}

// kinds are the error kinds the protocol carries, by name.
var kinds = []struct {
	name string
	kind error
}{
	{"NotFound", errdefs.ErrNotFound},
	{"InvalidArgument", errdefs.ErrInvalidArgument},
	{"AlreadyExists", errdefs.ErrAlreadyExists},
	{"ResourceExhausted", errdefs.ErrResourceExhausted},
	{"FailedPrecondition", errdefs.ErrFailedPrecondition},
	{"Unavailable", errdefs.ErrUnavailable},
	{"Unauthenticated", errdefs.ErrUnauthenticated},
	{"PermissionDenied", errdefs.ErrPermissionDenied},
}

func kindName(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.kind) {
			return k.name
		}
	}
	return "Unknown"
}

func kindOf(name string) error {
	for _, k := range kinds {
		if k.name == name {
			return k.kind
		}
	}
	return nil
}
