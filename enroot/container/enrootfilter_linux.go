package container

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// enrootFilterSyscalls are the calls Enroot's seccomp filter (enroot-nsenter) makes
// succeed without effect in a user namespace: with a single ID mapped, changing owners
// or IDs cannot work, and package managers and the like would fail on it.
var enrootFilterSyscalls = []uint32{unix.SYS_CHOWN, unix.SYS_LCHOWN, unix.SYS_SETUID, unix.SYS_SETGID,
	unix.SYS_SETREUID, unix.SYS_SETREGID, unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETGROUPS,
	unix.SYS_FCHOWNAT, unix.SYS_FCHOWN}

// auditArchX86_64 is AUDIT_ARCH_X86_64: the filter answers only native calls.
const auditArchX86_64 = 0xc000003e

// enrootFilter is Enroot's filter as BPF: those calls, and setfsuid/setfsgid with an ID
// other than -1 (a query), return 0 without being made.
func enrootFilter() ([]bpf.RawInstruction, error) {
	n := len(enrootFilterSyscalls)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX86_64, SkipFalse: uint8(n + 5)},
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
	}
	for i, nr := range enrootFilterSyscalls {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(n - i + 4)})
	}
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SETFSUID, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SETFSGID, SkipFalse: 2},
		bpf.LoadAbsolute{Off: 16, Size: 4}, // seccomp_data.args[0], low half
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0xffffffff, SkipFalse: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO}, // errno 0: success, nothing done
	)
	return bpf.Assemble(prog)
}

// loadEnrootFilter installs Enroot's seccomp filter on the calling thread. It is its
// own filter (SECCOMP_RET_ERRNO with errno 0, which the profile compiler cannot
// express), installed before the container's profile; the kernel applies the
// strictest answer of all filters.
func loadEnrootFilter() error {
	raw, err := enrootFilter()
	if err != nil {
		return fmt.Errorf("assemble Enroot's seccomp filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// seccomp(2) takes the program by address; the conversion stays in the call.
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))) //nolint:gosec
	if errno != 0 {
		return fmt.Errorf("load Enroot's seccomp filter: %w", errno)
	}
	return nil
}
