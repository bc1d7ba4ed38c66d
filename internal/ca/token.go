package ca

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files the control plane keeps next to the CA.
const (
	AdminTokenFile = "admin-token"
	tokenKeyFile   = "token-key"
)

// tokenPrefix versions the token format.
const tokenPrefix = "skein1."

// Claims is what a workload token binds.
type Claims struct {
	Namespace      string `json:"ns"`
	Pod            string `json:"pod"`
	ServiceAccount string `json:"sa"`
	IssuedAt       int64  `json:"iat"`
	Expiry         int64  `json:"exp"`
}

// Tokens issues and verifies workload tokens: a JSON claims payload and
// its HMAC-SHA256 under a key only the control plane holds. This is the
// local stand-in for Kubernetes' projected service account tokens.
type Tokens struct {
	key []byte
	now func() time.Time
}

// OpenTokens loads the HMAC key from dir, creating it on first use (empty
// dir: a key in memory). now defaults to time.Now.
func OpenTokens(dir string, now func() time.Time) (*Tokens, error) {
	if now == nil {
		now = time.Now
	}
	if dir == "" {
		key := make([]byte, 32)
		rand.Read(key)
		return &Tokens{key: key, now: now}, nil
	}
	secret, err := loadOrCreateSecret(filepath.Join(dir, tokenKeyFile))
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(secret)
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("ca: %s: not a 32-byte hex key", filepath.Join(dir, tokenKeyFile))
	}
	return &Tokens{key: key, now: now}, nil
}

// Issue signs c, valid for ttl from now.
func (t *Tokens) Issue(c Claims, ttl time.Duration) string {
	now := t.now()
	c.IssuedAt, c.Expiry = now.Unix(), now.Add(ttl).Unix()
	payload, _ := json.Marshal(c)
	body := tokenPrefix + b64(payload)
	return body + "." + b64(t.mac(body))
}

func (t *Tokens) mac(body string) []byte {
	h := hmac.New(sha256.New, t.key)
	h.Write([]byte(body))
	return h.Sum(nil)
}

// Verify checks the signature and expiry and answers the claims.
func (t *Tokens) Verify(token string) (Claims, error) {
	var c Claims
	if !strings.HasPrefix(token, tokenPrefix) {
		return c, errors.New("not a skein workload token")
	}
	i := strings.LastIndexByte(token, '.')
	body, sig := token[:i], token[i+1:]
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, t.mac(body)) {
		return c, errors.New("token signature is invalid")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, tokenPrefix))
	if err != nil {
		return c, errors.New("token payload is not base64url")
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("token payload: %w", err)
	}
	if c.Namespace == "" || c.Pod == "" || c.ServiceAccount == "" {
		return c, errors.New("token does not name a namespace, pod and service account")
	}
	if exp := time.Unix(c.Expiry, 0); !t.now().Before(exp) {
		return c, fmt.Errorf("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// LoadOrCreateAdminToken answers the admin token kept in dir (written 0600
// on first use); with an empty dir it is random and only in memory.
func LoadOrCreateAdminToken(dir string) (string, error) {
	if dir == "" {
		return randomHex(), nil
	}
	return loadOrCreateSecret(filepath.Join(dir, AdminTokenFile))
}

// LoadOrCreateAdminTokenFile is LoadOrCreateAdminToken for a credential
// kept in a file of its own rather than in a CA directory.
func LoadOrCreateAdminTokenFile(path string) (string, error) { return loadOrCreateSecret(path) }

// loadOrCreateSecret reads a hex secret from path or writes a new one 0600.
func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("ca: %s is empty", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("ca: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("ca: %w", err)
	}
	s := randomHex()
	if err := writeFileAtomic(path, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}

func randomHex() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
