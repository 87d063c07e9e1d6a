// Package imagesocket is the daemon's image socket: the way `enroot-cri images
// import` (root) and the pyxis importer (the user of a Slurm job) reach the image
// store. The CRI socket stays root's alone; this one is open to every local user,
// who is known by SO_PEERCRED and may only do what their uid allows.
//
// The protocol is one request per connection over a SOCK_SEQPACKET socket: the client
// sends one JSON Request message (with the file's descriptor attached for an import);
// the daemon answers with Reply messages, zero or more with Progress, then one with
// the result or an error.
package imagesocket
