// Package nsenter starts processes inside existing namespaces. A Go process is
// multi-threaded, so setns affects one thread only: Start joins the namespaces on a
// dedicated, locked OS thread and forks the child from it; the child inherits that
// thread's namespaces. The thread is never returned to the Go scheduler: it ends with
// its goroutine.
package nsenter
