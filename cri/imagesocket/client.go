package imagesocket

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Call sends req (with file's descriptor when file is not nil) to the image socket at
// path and returns the result; progress, when not nil, receives the progress lines.
// An error the daemon reports keeps its kind (errors.Is with errdefs).
func Call(path string, req Request, file *os.File, progress func(string)) (Reply, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return Reply{}, fmt.Errorf("connect to enroot-cri's image socket %s (is the daemon running?): %w", path, err)
	}
	defer func() { _ = c.Close() }()
	data, err := json.Marshal(req) //nolint:gosec // the caller's own credentials, sent to the daemon over a local socket
	if err != nil {
		return Reply{}, err
	}
	var oob []byte
	if file != nil {
		oob = unix.UnixRights(int(file.Fd()))
	}
	if _, _, err := c.WriteMsgUnix(data, oob, nil); err != nil {
		return Reply{}, fmt.Errorf("send request to %s: %w", path, err)
	}
	buf := make([]byte, 16<<20)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return Reply{}, fmt.Errorf("read the answer of %s: %w", path, err)
		}
		if n == 0 {
			return Reply{}, fmt.Errorf("enroot-cri closed %s without an answer (did it stop?)", path)
		}
		var r Reply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			return Reply{}, fmt.Errorf("answer of %s: %w", path, err)
		}
		if r.Progress != "" && progress != nil {
			progress(r.Progress)
		}
		if !r.Done {
			continue
		}
		if r.Error != "" {
			err := errors.New(r.Error)
			if kind := kindOf(r.Code); kind != nil {
				err = errdefs.WithKind(err, kind)
			}
			return r, err
		}
		return r, nil
	}
}
