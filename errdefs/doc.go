// Package errdefs holds the error kinds shared by every package of enroot-cri.
//
// Leaf packages (enroot/, cgroups/, mig/, ledger/) classify their errors with these sentinels;
// cri/ turns them into gRPC status codes in a single interceptor. This package imports
// only the standard library, so every other package may import it.
package errdefs
