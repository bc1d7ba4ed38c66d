package configstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Every write carries a SHA-256 of each object's document, so a hand-edited
// or damaged store.json is found at start rather than loaded silently. The
// file being replaced is kept as store.json.prev: the last good revision
// to fall back to.

const prevFile = storeFile + ".prev"

// CorruptError names the file and object whose checksum does not match.
type CorruptError struct {
	File   string
	Object string // kind namespace/name, or "" for the file as a whole
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Object == "" {
		return fmt.Sprintf("config store: %s is corrupt: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("config store: %s: %s: %s", e.File, e.Object, e.Reason)
}

// objectSum is the checksum of one encoded object.
func objectSum(doc map[string]any) (string, error) {
	b, err := json.Marshal(doc) // map keys sorted: canonical
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// docName is how a report names an object: "Deployment bookinfo/x".
func docName(doc map[string]any) string {
	kind, _ := doc["kind"].(string)
	meta, _ := doc["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	if ns != "" {
		name = ns + "/" + name
	}
	return kind + " " + name
}

// verify checks ff's checksums (a file written before checksums has none
// and is accepted as it is).
func verify(path string, ff *fileFormat) error {
	if ff.Checksums == nil {
		return nil
	}
	if len(ff.Checksums) != len(ff.Objects) {
		return &CorruptError{File: path, Reason: fmt.Sprintf("%d objects but %d checksums", len(ff.Objects), len(ff.Checksums))}
	}
	for i, doc := range ff.Objects {
		sum, err := objectSum(doc)
		if err != nil || sum != ff.Checksums[i] {
			return &CorruptError{File: path, Object: docName(doc),
				Reason: "checksum mismatch (edited by hand or damaged); use skein apply to change config"}
		}
	}
	return nil
}

// Recovery reports that Open fell back to the last good revision.
type Recovery struct {
	Problem  *CorruptError
	Revision int64  // the revision loaded from store.json.prev
	KeptAs   string // where the corrupt file was moved
}

func (r *Recovery) String() string {
	return fmt.Sprintf("%v; loaded the last good revision %d from %s; the corrupt file is kept as %s",
		r.Problem, r.Revision, prevFile, r.KeptAs)
}

// Check verifies <dir>/store.json without opening the store, for a runner
// to report on its console before it starts the control plane: nil when
// the file is absent or intact.
func Check(dir string) error {
	fs := &fileStore{dir: dir}
	_, err := fs.read(fs.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// recover loads store.json.prev after store.json failed its check and
// moves the corrupt file aside, so the next write does not destroy the
// evidence.
func (fs *fileStore) recover(problem *CorruptError) (*snapshot, *Recovery, error) {
	prev := filepath.Join(fs.dir, prevFile)
	snap, err := fs.read(prev)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (and no last good revision: %v)", problem, err)
	}
	kept := fs.path() + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(fs.path(), kept); err != nil {
		return nil, nil, fmt.Errorf("%w (moving it aside: %v)", problem, err)
	}
	return snap, &Recovery{Problem: problem, Revision: snap.rev, KeptAs: filepath.Base(kept)}, nil
}

// keepPrevious links the file about to be replaced as store.json.prev.
func (fs *fileStore) keepPrevious() {
	prev := filepath.Join(fs.dir, prevFile)
	_ = os.Remove(prev)
	if err := os.Link(fs.path(), prev); err != nil && !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "exists") {
		// A file system without hard links: copy.
		if b, rerr := os.ReadFile(fs.path()); rerr == nil {
			_ = os.WriteFile(prev, b, 0o600)
		}
	}
}
