// Package inroot resolves and creates paths inside a directory tree the way a chroot
// would (openat2 RESOLVE_IN_ROOT): a symlink to "/etc" or a ".." inside the tree stays
// inside it. Image layers and container mount targets both come from untrusted
// images, so every path into them goes through here.
package inroot
