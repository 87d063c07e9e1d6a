package errdefs

import "errors"

// Sentinel error kinds. Wrap them with fmt.Errorf("...: %w", errdefs.ErrNotFound)
// and test them with errors.Is; the gRPC interceptor maps each to one status code.
var (
	ErrNotFound           = errors.New("not found")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrAlreadyExists      = errors.New("already exists")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrUnimplemented      = errors.New("not implemented")
	ErrUnauthenticated    = errors.New("unauthenticated")
	ErrPermissionDenied   = errors.New("permission denied")
)

// kindError attaches a sentinel kind to an error without changing its message.
type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string { return e.err.Error() }

func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// WithKind returns err classified as kind (errors.Is(result, kind) is true) while
// keeping err's message and its own chain. A nil err stays nil.
func WithKind(err, kind error) error {
	if err == nil {
		return nil
	}
	return &kindError{err: err, kind: kind}
}
