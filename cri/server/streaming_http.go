package server

import (
	"net"
	"net/http"
	"time"
)

// httpServe serves h on l until l closes.
func httpServe(l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	return srv.Serve(l)
}
