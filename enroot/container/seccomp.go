package container

import (
	"fmt"
	"runtime"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// seccompPolicy turns an OCI seccomp profile into a BPF policy for this architecture.
// Syscalls the architecture does not have are skipped, as libseccomp does; an action
// this runtime cannot express is an error.
func seccompPolicy(p *specs.LinuxSeccomp) (*seccomp.Policy, error) {
	def, err := seccompAction(p.DefaultAction, nil)
	if err != nil {
		return nil, fmt.Errorf("seccomp defaultAction: %w", err)
	}
	if p.DefaultErrnoRet != nil && *p.DefaultErrnoRet != uint(unix.EPERM) {
		return nil, fmt.Errorf("seccomp defaultErrnoRet %d: only EPERM is supported for the default action", *p.DefaultErrnoRet)
	}
	info, err := arch.GetInfo(runtime.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("seccomp for %s: %w", runtime.GOARCH, err)
	}
	policy := &seccomp.Policy{DefaultAction: def}
	groups := map[seccomp.Action]*seccomp.SyscallGroup{} // rules with one action combine
	var order []seccomp.Action
	for i, rule := range p.Syscalls {
		action, err := seccompAction(rule.Action, rule.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp syscalls[%d].action: %w", i, err)
		}
		group, ok := groups[action]
		if !ok {
			group = &seccomp.SyscallGroup{Action: action}
			groups[action] = group
			order = append(order, action)
		}
		for _, name := range rule.Names {
			if _, ok := info.SyscallNames[name]; !ok {
				continue
			}
			if len(rule.Args) == 0 {
				group.Names = append(group.Names, name)
				continue
			}
			conds, err := seccompArgs(rule.Args)
			if err != nil {
				return nil, fmt.Errorf("seccomp syscalls[%d] (%s): %w", i, name, err)
			}
			group.NamesWithCondtions = append(group.NamesWithCondtions, seccomp.NameWithConditions{Name: name, Conditions: conds})
		}
	}
	for _, a := range order {
		if g := groups[a]; len(g.Names) > 0 || len(g.NamesWithCondtions) > 0 {
			policy.Syscalls = append(policy.Syscalls, *g)
		}
	}
	return policy, nil
}

func seccompAction(a specs.LinuxSeccompAction, errno *uint) (seccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccomp.ActionAllow, nil
	case specs.ActErrno:
		if errno != nil && *errno != uint(unix.EPERM) {
			if *errno > 0xffff {
				return 0, fmt.Errorf("errnoRet %d is out of range", *errno)
			}
			return seccomp.Action(unix.SECCOMP_RET_ERRNO | uint32(*errno)), nil
		}
		return seccomp.ActionErrno, nil
	case specs.ActKill, specs.ActKillThread:
		return seccomp.ActionKillThread, nil
	case specs.ActKillProcess:
		return seccomp.ActionKillProcess, nil
	case specs.ActTrap:
		return seccomp.ActionTrap, nil
	case specs.ActLog:
		return seccomp.ActionLog, nil
	default:
		return 0, fmt.Errorf("action %q is not supported (allowed: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_LOG)", a)
	}
}

func seccompArgs(args []specs.LinuxSeccompArg) (seccomp.ArgumentConditions, error) {
	var out seccomp.ArgumentConditions
	for _, a := range args {
		c := seccomp.Condition{Argument: uint32(a.Index), Value: a.Value}
		switch a.Op {
		case specs.OpEqualTo:
			c.Operation = seccomp.Equal
		case specs.OpNotEqual:
			c.Operation = seccomp.NotEqual
		case specs.OpGreaterThan:
			c.Operation = seccomp.GreaterThan
		case specs.OpLessThan:
			c.Operation = seccomp.LessThan
		case specs.OpGreaterEqual:
			c.Operation = seccomp.GreaterOrEqual
		case specs.OpLessEqual:
			c.Operation = seccomp.LessOrEqual
		case specs.OpMaskedEqual:
			// (arg & mask) == value: with value 0 it is "none of the mask bits set".
			if a.ValueTwo != 0 {
				return nil, fmt.Errorf("SCMP_CMP_MASKED_EQ with a non-zero value is not supported")
			}
			c.Operation, c.Value = seccomp.BitsNotSet, a.Value
		default:
			return nil, fmt.Errorf("argument operator %q is not supported", strings.TrimPrefix(string(a.Op), "SCMP_CMP_"))
		}
		out = append(out, c)
	}
	return out, nil
}
