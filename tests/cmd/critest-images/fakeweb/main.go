// Command fakeweb stands in for the nginx and httpd test images of critest: it serves
// HTTP on the port given (80 by default) and logs one line per request, under the
// process name it is installed as.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	port := flag.Int("port", 80, "port to listen on")
	flag.Parse()
	log.SetPrefix(filepath.Base(os.Args[0]) + ": ")
	if err := os.WriteFile("/var/run/nginx.pid", []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		log.Printf("no pid file: %v", err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.Path)
		fmt.Fprintln(w, "<html><body>Welcome to the enroot-cri test web server</body></html>")
	})
	log.Printf("listening on :%d", *port)
	log.Fatal(http.ListenAndServe(fmt.Sprintf(":%d", *port), nil))
}
