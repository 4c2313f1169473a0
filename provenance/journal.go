package provenance

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLineTooLong is returned by Append for a record whose line would exceed
// MaxLine.
var ErrLineTooLong = errors.New("journal line too long")

// MarshalLine returns r as one journal line, newline included, or
// ErrLineTooLong.
func MarshalLine(r *Record) ([]byte, error) {
	b := AppendLine(nil, r)
	if len(b) > MaxLine {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrLineTooLong, len(b), MaxLine)
	}
	return b, nil
}

// Append adds r to the journal at path, creating it (mode 0644) if needed.
//
// The line goes out in a single write(2) on a descriptor opened with
// O_APPEND, while an exclusive flock on the journal is held: concurrent
// appenders (parallel builds finishing together, each running its own
// hook) never interleave. Should the write fail part-way (a full disk),
// the file is cut back to where the line began, so a reader never meets a
// torn line from Append. Journals must be on a local file system: flock
// and O_APPEND are not atomic over NFS.
func Append(path string, r *Record) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("journal %s: record: %w", path, err)
	}
	data, err := MarshalLine(r)
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := flock(fd, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("journal %s: lock: %w", path, err)
	}
	defer flock(fd, syscall.LOCK_UN)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("journal %s: not a regular file", path)
	}
	if st.Size > 0 {
		// A line someone else left without its newline must not swallow ours.
		var last [1]byte
		if k, _ := syscall.Pread(fd, last[:], st.Size-1); k == 1 && last[0] != '\n' {
			data = append([]byte{'\n'}, data...)
		}
	}
	n, err := syscall.Write(fd, data)
	if err == nil && n != len(data) {
		err = fmt.Errorf("short write (%d of %d bytes)", n, len(data))
	}
	if err != nil {
		if n > 0 {
			// Cut the partial line off: under the lock, nobody appended since.
			syscall.Ftruncate(fd, st.Size)
		}
		return fmt.Errorf("journal %s: append: %w", path, err)
	}
	return nil
}

// flock retries on EINTR.
func flock(fd, how int) error {
	for {
		err := syscall.Flock(fd, how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
