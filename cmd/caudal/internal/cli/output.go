package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// destination returns where a file written to path lands: the target of
// path when it is a symbolic link, path otherwise.
func destination(path string) string {
	if st, err := os.Lstat(path); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks(path); err == nil {
			return target
		}
	}
	return path
}

// checkOutputFile returns why a report file could not be written at path,
// or nil: path is a directory, or its directory is missing or not writable.
func checkOutputFile(path string) error {
	dest := destination(path)
	if st, err := os.Stat(dest); err == nil && st.IsDir() {
		return errors.New("is a directory")
	}
	return checkDir(filepath.Dir(dest))
}

// checkHistoryDir returns why the history directory dir could not be
// written, or nil. dir need not exist: its nearest existing ancestor must
// then be a writable directory, where it will be created.
func checkHistoryDir(dir string) error {
	for d := dir; ; {
		st, err := os.Stat(d)
		switch {
		case err == nil && st.IsDir():
			return checkDir(d)
		case err == nil && d == dir:
			return errors.New("is not a directory")
		case err == nil:
			return fmt.Errorf("%s is not a directory", d)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return errors.New("no directory on its path exists")
		}
		d = parent
	}
}

// checkDir returns why files could not be created in dir, or nil. It
// probes by creating and removing a file there.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".caudal-probe-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// stagedFile is a complete file written beside its destination, waiting to
// be renamed into place.
type stagedFile struct {
	tmp  string // "" once committed or discarded
	dest string
}

// stage writes a file for path with write, to a temporary file in path's
// directory. On error nothing is left behind and path is untouched. The
// file gets the mode of the file it will replace, or 0644.
func stage(path string, write func(io.Writer) error) (*stagedFile, error) {
	dest := destination(path)
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(dest); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	bw := bufio.NewWriter(f)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &stagedFile{tmp: f.Name(), dest: dest}, nil
}

// commit renames the file into place.
func (s *stagedFile) commit() error {
	if err := os.Rename(s.tmp, s.dest); err != nil {
		return fmt.Errorf("writing %s: %w", s.dest, err)
	}
	s.tmp = ""
	return nil
}

// discard removes the file unless it was committed.
func (s *stagedFile) discard() {
	if s.tmp != "" {
		_ = os.Remove(s.tmp)
		s.tmp = ""
	}
}
