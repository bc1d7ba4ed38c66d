package configstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/skein-mesh/skein/internal/config"
)

const (
	storeFile  = "store.json"
	tempPrefix = storeFile + ".tmp-"
)

// fileStore writes a whole snapshot to <dir>/store.json atomically: write a
// temp file in the same directory, fsync it, rename it over store.json,
// fsync the directory so the rename itself is durable.
type fileStore struct {
	dir string
	// writeData writes the encoded set to the temp file. Tests replace it
	// to fail part-way, as a crash or a full disk would.
	writeData func(f *os.File, data []byte) error
}

// fileFormat is store.json's layout.
type fileFormat struct {
	Revision int64            `json:"revision"`
	Objects  []map[string]any `json:"objects"`
	// Checksums[i] is objectSum(Objects[i]) (integrity.go).
	Checksums []string `json:"checksums,omitempty"`
}

func openFileStore(dir string) (*fileStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("config store: %w", err)
	}
	// Temp files left by a crash mid-write were never committed.
	leftovers, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	for _, f := range leftovers {
		_ = os.Remove(f)
	}
	return &fileStore{dir: dir, writeData: func(f *os.File, data []byte) error {
		_, err := f.Write(data)
		return err
	}}, nil
}

func (fs *fileStore) path() string { return filepath.Join(fs.dir, storeFile) }

// load reads store.json; when it fails its checksums, the last good
// revision (store.json.prev) is loaded instead and reported.
func (fs *fileStore) load() (*snapshot, *Recovery, error) {
	snap, err := fs.read(fs.path())
	if errors.Is(err, os.ErrNotExist) {
		return emptySnapshot(), nil, nil
	}
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		return fs.recover(corrupt)
	}
	return snap, nil, err
}

// read loads and verifies one store file.
func (fs *fileStore) read(path string) (*snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("config store: %w", err)
	}
	var ff fileFormat
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&ff); err != nil {
		return nil, &CorruptError{File: path, Reason: "not valid JSON: " + err.Error()}
	}
	// Numbers decode as json.Number; checksums are over what was encoded.
	if err := verify(path, &ff); err != nil {
		return nil, err
	}
	b := emptySnapshot().builder()
	for i, doc := range ff.Objects {
		obj, err := config.Decode(doc)
		if err != nil {
			return nil, &CorruptError{File: path, Object: docName(doc), Reason: fmt.Sprintf("object %d: %v", i, err)}
		}
		b.put(obj)
	}
	return b.build(ff.Revision), nil
}

func (fs *fileStore) save(snap *snapshot) error {
	ff := fileFormat{Revision: snap.rev, Objects: []map[string]any{}}
	kinds := make([]string, 0, len(snap.kinds))
	for k := range snap.kinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		for _, o := range snap.kinds[k].sorted {
			doc, err := config.Encode(o)
			if err != nil {
				return err
			}
			sum, err := objectSum(doc)
			if err != nil {
				return err
			}
			ff.Objects = append(ff.Objects, doc)
			ff.Checksums = append(ff.Checksums, sum)
		}
	}
	data, err := json.MarshalIndent(ff, "", " ")
	if err != nil {
		return err
	}
	return fs.writeAtomic(append(data, '\n'))
}

func (fs *fileStore) writeAtomic(data []byte) (err error) {
	f, err := os.CreateTemp(fs.dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = fs.writeData(f, data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	fs.keepPrevious()
	if err = os.Rename(tmp, fs.path()); err != nil {
		return err
	}
	// The new set is visible now. If the directory cannot be synced, a
	// power loss may bring back the old set, which is still a whole set:
	// report success rather than split memory and disk.
	_ = syncDir(fs.dir)
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
