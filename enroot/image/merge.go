package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
)

// A pull writes each byte once: the layers are read twice, never unpacked. The first
// read (index) takes only the tar headers of each layer, in order, and applies them to
// an in-memory tree of the image, with the rules a layer applied to a directory would
// follow: whiteouts and opaque directories delete what lower layers wrote, a later
// entry replaces an earlier one, symlinks in a path resolve inside the image, device
// nodes and anything under dev/ are left out. What survives knows the entry that gives
// it its content and attributes. The second read (stream.go) copies exactly those
// entries, with their final names, into one tar stream that mksquashfs reads.

// maxSymlinks bounds the symlinks one path resolution follows in all, as the kernel
// does (a count, not a depth: "a -> a/a" would otherwise take 2^depth steps).
const maxSymlinks = 40

// entryRef is one tar entry of one layer: the layer's index and the entry's place in
// its tar stream.
type entryRef struct{ layer, seq int }

// inodeRef is what one or more names (hard links) of a non-directory share: the entry
// that wrote it, its type and owner.
type inodeRef struct {
	src      entryRef
	typeflag byte
	uid, gid int
	size     int64
	origin   *mnode // the name the entry itself wrote
	primary  *mnode // the surviving name the stream writes the content under
}

// mnode is one name of the merged image.
type mnode struct {
	name     string
	parent   *mnode
	children map[string]*mnode // directories only (non-nil)
	layer    int               // the layer that last wrote or created it (for opaque markers)
	// A directory's attributes come from dir (nil: made implicitly, root's, 0755).
	dir *dirAttrs
	// A non-directory's content.
	ino    *inodeRef
	target string // a symlink's target, for resolution
}

type dirAttrs struct {
	src      entryRef
	uid, gid int
}

func (n *mnode) isDir() bool { return n.children != nil }

func (n *mnode) path() string {
	if n.parent == nil {
		return ""
	}
	var parts []string
	for m := n; m.parent != nil; m = m.parent {
		parts = append(parts, m.name)
	}
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

// merger is the in-memory tree the layers' headers are applied to.
type merger struct {
	root   *mnode
	budget *budget
	layer  int // the layer being applied
}

func newMerger(b *budget) *merger {
	return &merger{root: &mnode{children: map[string]*mnode{}, layer: -1}, budget: b}
}

// indexLayer applies the headers of layer i's tar stream (read to its end, content
// skipped) to the tree.
func (m *merger) indexLayer(i int, r io.Reader) error {
	m.layer = i
	tr := tar.NewReader(r)
	var opaque []string
	for seq := 0; ; seq++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		dir, err := m.apply(entryRef{i, seq}, hdr)
		if err != nil {
			return err
		}
		if dir != nil {
			opaque = append(opaque, *dir)
		}
	}
	for _, dir := range opaque {
		if err := m.makeOpaque(dir); err != nil {
			return err
		}
	}
	return nil
}

// apply applies one entry; an opaque marker is returned (its directory), to be applied
// once the whole layer is.
func (m *merger) apply(ref entryRef, hdr *tar.Header) (*string, error) {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return nil, err
	}
	size := int64(0)
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeGNUSparse {
		size = hdr.Size
	}
	if err := m.budget.entry(size); err != nil {
		return nil, err
	}
	base := path.Base(rel)
	switch {
	case rel == "":
		return nil, nil // the root's own attributes are the store's
	case strings.HasPrefix(rel, "dev/"):
		return nil, nil // Enroot takes nothing under /dev from an image
	case base == opaqueMarker:
		dir := path.Dir(rel)
		return &dir, nil
	case strings.HasPrefix(base, whiteoutPrefix):
		parent, name, err := m.parentOf(path.Join(path.Dir(rel), strings.TrimPrefix(base, whiteoutPrefix)))
		if err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if name != "" {
			delete(parent.children, name)
		}
		return nil, nil
	}
	if err := m.write(ref, rel, hdr); err != nil {
		return nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
	}
	return nil, nil
}

// write applies one non-whiteout entry at rel.
func (m *merger) write(ref entryRef, rel string, hdr *tar.Header) error {
	parent, name, err := m.parentOf(rel)
	if err != nil {
		return err
	}
	if name == "" {
		return nil // rel resolved to the root
	}
	old := parent.children[name]
	if hdr.Typeflag == tar.TypeDir && old != nil && old.isDir() {
		old.dir = &dirAttrs{src: ref, uid: hdr.Uid, gid: hdr.Gid} // merge with the lower layer's
		old.layer = m.layer
		return nil
	}
	n := &mnode{name: name, parent: parent, layer: m.layer}
	switch hdr.Typeflag {
	case tar.TypeDir:
		n.children = map[string]*mnode{}
		n.dir = &dirAttrs{src: ref, uid: hdr.Uid, gid: hdr.Gid}
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeFifo:
		n.ino = &inodeRef{src: ref, typeflag: hdr.Typeflag, uid: hdr.Uid, gid: hdr.Gid, origin: n}
		if hdr.Typeflag != tar.TypeSymlink {
			n.ino.size = hdr.Size
		}
		if hdr.Typeflag == tar.TypeGNUSparse {
			n.ino.typeflag = tar.TypeReg
		}
		if hdr.Typeflag == tar.TypeSymlink {
			n.target = hdr.Linkname
		}
	case tar.TypeLink:
		target, err := m.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		if target == old {
			return fmt.Errorf("hard link to %q is the entry itself", hdr.Linkname)
		}
		n.ino, n.target = target.ino, target.target
	default:
		// Device nodes are never taken from images; other types carry no file. Either
		// way the name no longer holds what a lower layer put there.
		delete(parent.children, name)
		return nil
	}
	parent.children[name] = n
	return nil
}

// linkTarget finds the non-directory a hard link names, a path inside the image.
func (m *merger) linkTarget(target string) (*mnode, error) {
	rel, err := cleanName(target)
	if err != nil {
		return nil, fmt.Errorf("hard link target: %w", err)
	}
	if rel == "" {
		return nil, fmt.Errorf("hard link target %q is the image root", target)
	}
	followed := 0
	dir, err := m.resolve(m.root, path.Dir(rel), false, &followed)
	if err == nil {
		if n := dir.children[path.Base(rel)]; n != nil && !n.isDir() {
			return n, nil
		}
		err = errors.New("no such file")
	}
	return nil, fmt.Errorf("hard link to %q (the target must be a file of the image): %w", target, err)
}

// parentOf returns the directory holding rel, created (root's, 0755) where missing,
// with rel's last component; symlinks on the way resolve inside the image.
func (m *merger) parentOf(rel string) (*mnode, string, error) {
	rel = path.Clean("/" + rel)[1:]
	followed := 0
	dir, err := m.resolve(m.root, path.Dir(rel), true, &followed)
	if err != nil {
		return nil, "", err
	}
	if rel == "" {
		return dir, "", nil
	}
	return dir, path.Base(rel), nil
}

// resolve walks rel from dir to a directory, following symlinks inside the image
// ("/" and ".." above the root are the root). Missing directories named in rel itself
// are created when create is set; a symlink's target must exist. followed counts the
// symlinks this resolution has followed.
func (m *merger) resolve(dir *mnode, rel string, create bool, followed *int) (*mnode, error) {
	if strings.HasPrefix(rel, "/") {
		dir = m.root
	}
	for _, c := range strings.Split(rel, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			if dir.parent != nil {
				dir = dir.parent
			}
			continue
		}
		next := dir.children[c]
		switch {
		case next == nil && create:
			next = &mnode{name: c, parent: dir, children: map[string]*mnode{}, layer: m.layer}
			dir.children[c] = next
		case next == nil:
			return nil, fmt.Errorf("%s: no such directory", c)
		case next.ino != nil && next.ino.typeflag == tar.TypeSymlink:
			if *followed++; *followed > maxSymlinks {
				return nil, fmt.Errorf("%s: too many levels of symbolic links", c)
			}
			var err error
			if next, err = m.resolve(dir, next.target, false, followed); err != nil {
				return nil, err
			}
		case !next.isDir():
			return nil, fmt.Errorf("%s: not a directory", c)
		}
		dir = next
	}
	return dir, nil
}

// makeOpaque hides what lower layers wrote under dir, keeping what this layer wrote.
func (m *merger) makeOpaque(rel string) error {
	parent, name, err := m.parentOf(rel)
	if err != nil {
		return fmt.Errorf("make %s opaque: %w", rel, err)
	}
	dir := parent
	if name != "" {
		dir = parent.children[name]
	}
	if dir == nil || !dir.isDir() {
		return nil // nothing below to hide
	}
	m.hideLower(dir)
	return nil
}

func (m *merger) hideLower(dir *mnode) {
	for name, child := range dir.children {
		switch {
		case child.layer != m.layer:
			delete(dir.children, name)
		case child.isDir():
			m.hideLower(child)
		}
	}
}

// mkdirAll makes sure directory rel exists (what `enroot import` does for the working
// directory), resolving symlinks inside the image.
func (m *merger) mkdirAll(rel string) error {
	followed := 0
	_, err := m.resolve(m.root, rel, true, &followed)
	return err
}

// plan is what the stream writes, from the merged tree.
type plan struct {
	emit     map[entryRef]*mnode // entry → the name it is written under
	links    []*mnode            // names written as hard links to their inode's primary
	implicit []*mnode            // directories no entry gave attributes
	allRoot  bool                // every file root's (the Enroot layout)
	bytes    int64               // the regular files' content
}

// plan walks the merged tree: each surviving inode is written once, under the name its
// own entry gave it when that name survives, otherwise under its first surviving name;
// its other names become hard links to it.
func (m *merger) plan() *plan {
	p := &plan{emit: map[entryRef]*mnode{}, allRoot: true}
	var files []*mnode
	var walk func(*mnode)
	walk = func(dir *mnode) {
		for _, name := range slices.Sorted(maps.Keys(dir.children)) {
			n := dir.children[name]
			if !n.isDir() {
				files = append(files, n)
				if n.ino.origin == n {
					n.ino.primary = n
				}
				continue
			}
			if n.dir == nil {
				p.implicit = append(p.implicit, n)
			} else {
				p.emit[n.dir.src] = n
				p.allRoot = p.allRoot && n.dir.uid == 0 && n.dir.gid == 0
			}
			walk(n)
		}
	}
	walk(m.root)
	for _, n := range files {
		ino := n.ino
		switch {
		case ino.primary == nil:
			ino.primary = n
		case ino.primary != n:
			p.links = append(p.links, n)
			continue
		}
		p.emit[ino.src] = n
		p.allRoot = p.allRoot && ino.uid == 0 && ino.gid == 0
		if ino.typeflag == tar.TypeReg {
			p.bytes += ino.size
		}
	}
	return p
}
