// Package testregistry serves OCI images from an in-process registry on 127.0.0.1 and
// builds the small images that tests and the demo use. It is for tests and the demo
// only: no production code imports it.
//
// The registry is github.com/google/go-containerregistry/pkg/registry behind optional
// basic or token authentication, and it counts blob downloads so that tests can see
// what a pull fetched.
package testregistry
