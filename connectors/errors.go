package connectors

import "errors"

// ErrEndOfInput is returned by [Source.Read] once the source has no more
// records and never will (Benthos' ErrEndOfInput). Which transports reach
// it follows Feldera: datagen with a limit, file_input without follow,
// url_input always.
var ErrEndOfInput = errors.New("end of input")

// ErrFatal marks an error that retrying cannot fix: a bad config, a missing
// file, refused credentials. The Ingest activity turns it into a
// non-retryable failure that shows as the connector's fatal_error. Wrap it:
// fmt.Errorf("open %s: %w", path, errors.Join(ErrFatal, err)) or use [Fatal].
var ErrFatal = errors.New("fatal")

// Fatal marks err as fatal; errors.Is(Fatal(err), ErrFatal) holds and the
// message is err's own.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return fatalError{err}
}

type fatalError struct{ err error }

func (f fatalError) Error() string        { return f.err.Error() }
func (f fatalError) Unwrap() []error      { return []error{ErrFatal, f.err} }
func (f fatalError) Is(target error) bool { return target == ErrFatal }
