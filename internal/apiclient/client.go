// Package apiclient talks to the Skein control plane's config API (served
// by internal/configapi) on behalf of the CLI and other processes.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skein-mesh/skein/internal/apiwire"
	"github.com/skein-mesh/skein/internal/config"
)

// requestTimeout bounds every call but the long-poll, so a hung control
// plane cannot hang the CLI.
const requestTimeout = 30 * time.Second

// Client is a config API client. It is safe for concurrent use.
type Client struct {
	addr string // as given, for messages
	base string // scheme://host:port
	http *http.Client
	// credFile, when token is empty, is read on each call until it yields
	// a token: a runner starts its client before discovery writes it.
	credFile string
	mu       sync.Mutex
	token    string // the bearer credential; "" sends none
}

// New returns a client for the control plane at addr ("host:port" or an
// http:// URL) that authenticates with the credential at
// apiwire.DefaultCredentialPath when that file is readable, as kubectl
// finds ~/.kube/config.
func New(addr string) *Client {
	return NewWithCredentialFile(addr, apiwire.DefaultCredentialPath())
}

// NewWithCredentialFile returns a client that authenticates with the
// credential in path, read when first needed (and again while missing).
func NewWithCredentialFile(addr, path string) *Client {
	c := NewWithToken(addr, "")
	c.credFile = path
	return c
}

// NewWithToken returns a client sending token as its bearer credential
// ("" for none).
func NewWithToken(addr, token string) *Client {
	base := strings.TrimRight(addr, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "http://" + base
	}
	display := strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	return &Client{addr: strings.TrimRight(display, "/"), base: base, http: &http.Client{}, token: token}
}

// ReadCredential reads a credential file (the token on its first line).
func ReadCredential(path string) (string, error) {
	if path == "" {
		return "", errors.New("no credential file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("credential file %s is empty", path)
	}
	return tok, nil
}

// Token is the bearer credential the client sends ("" for none).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == "" && c.credFile != "" {
		if tok, err := ReadCredential(c.credFile); err == nil {
			c.token = tok
		}
	}
	return c.token
}

// UnreachableError means no HTTP answer came back at all.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Skein control plane at %s (is \"skein up\" or \"skein discovery\" running?)", e.Addr)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// StatusError is an error answer from the control plane.
type StatusError struct {
	Code    int    // HTTP status
	Reason  string // e.g. "NotFound", "Invalid"
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// IsNotFound reports whether err is the control plane saying an object
// (or kind) does not exist.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Apply creates or updates objs as one change (all or nothing).
func (c *Client) Apply(ctx context.Context, objs []*config.Object) ([]config.ApplyResult, error) {
	return c.apply(ctx, objs, "")
}

// DryRun reports what Apply would do without changing anything.
func (c *Client) DryRun(ctx context.Context, objs []*config.Object) ([]config.ApplyResult, error) {
	return c.apply(ctx, objs, "?dryRun=true")
}

func (c *Client) apply(ctx context.Context, objs []*config.Object, query string) ([]config.ApplyResult, error) {
	req := apiwire.ApplyRequest{Objects: make([]map[string]any, 0, len(objs))}
	for _, o := range objs {
		doc, err := config.Encode(o)
		if err != nil {
			return nil, err
		}
		req.Objects = append(req.Objects, doc)
	}
	var resp apiwire.ResultsResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/apply"+query, req, &resp, requestTimeout); err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// Delete removes the named objects as one change; if any is missing,
// nothing is deleted and the error is a NotFound StatusError.
func (c *Client) Delete(ctx context.Context, keys []config.Key) ([]config.ApplyResult, error) {
	var resp apiwire.ResultsResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/delete", apiwire.DeleteRequest{Keys: keys}, &resp, requestTimeout); err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// List returns the objects of kind in namespace ("" for all namespaces)
// and the store revision they were read at.
func (c *Client) List(ctx context.Context, kind, namespace string) ([]*config.Object, int64, error) {
	return c.objects(ctx, kind, namespace, "")
}

// Get returns one object, or a NotFound StatusError.
func (c *Client) Get(ctx context.Context, key config.Key) (*config.Object, error) {
	objs, _, err := c.objects(ctx, key.Kind, key.Namespace, key.Name)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("control plane answered %d objects for %s", len(objs), key)
	}
	return objs[0], nil
}

func (c *Client) objects(ctx context.Context, kind, namespace, name string) ([]*config.Object, int64, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if name != "" {
		q.Set("name", name)
	}
	path := "/api/v1/objects/" + url.PathEscape(kind)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var resp apiwire.ObjectsResponse
	if err := c.do(ctx, http.MethodGet, path, nil, &resp, requestTimeout); err != nil {
		return nil, 0, err
	}
	objs := make([]*config.Object, 0, len(resp.Objects))
	for _, doc := range resp.Objects {
		o, err := config.Decode(doc)
		if err != nil {
			return nil, 0, fmt.Errorf("control plane sent an object Skein cannot read: %w", err)
		}
		objs = append(objs, o)
	}
	return objs, resp.Revision, nil
}

// WaitForChange long-polls until the store revision exceeds since (or the
// server's watch timeout passes) and returns the revision then.
func (c *Client) WaitForChange(ctx context.Context, since int64) (int64, error) {
	var resp apiwire.WatchResponse
	err := c.do(ctx, http.MethodGet, "/api/v1/watch?since="+strconv.FormatInt(since, 10), nil, &resp, 0)
	return resp.Revision, err
}

// Ping checks that the control plane answers.
func (c *Client) Ping(ctx context.Context) error {
	_, _, err := c.objects(ctx, "Namespace", "", "")
	return err
}

// do sends one request with the client's credential; timeout 0 leaves the
// deadline to ctx.
func (c *Client) do(ctx context.Context, method, path string, body, into any, timeout time.Duration) error {
	auth := ""
	if tok := c.Token(); tok != "" {
		auth = "Bearer " + tok
	}
	return c.doAuth(ctx, method, path, auth, body, into, timeout)
}

// GetJSON reads a JSON endpoint of the control plane (e.g. /debug/syncz)
// with the client's credential.
func (c *Client) GetJSON(ctx context.Context, path string, into any) error {
	return c.do(ctx, http.MethodGet, path, nil, into, requestTimeout)
}

// doAuth is do with an Authorization header (none when auth is empty).
func (c *Client) doAuth(ctx context.Context, method, path, auth string, body, into any, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reader)
	if err != nil {
		return fmt.Errorf("invalid control plane address %q: %w", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded) {
			return ctxErr // the caller gave up
		}
		return &UnreachableError{Addr: c.addr, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return &UnreachableError{Addr: c.addr, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		var er apiwire.ErrorResponse
		if json.Unmarshal(data, &er) != nil || er.Error == "" {
			er.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return &StatusError{Code: resp.StatusCode, Reason: er.Reason, Message: er.Error}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("control plane answered %s %s with invalid JSON: %w", method, path, err)
	}
	return nil
}

// TokenResponse answers POST /api/v1/token.
type TokenResponse = apiwire.TokenResponse

// IssueToken asks the control plane for a workload token for a pod that is
// registered in the store; adminToken is the control plane's admin secret
// (the admin-token file in its CA directory).
func (c *Client) IssueToken(ctx context.Context, adminToken, namespace, pod string) (*TokenResponse, error) {
	var resp TokenResponse
	body := apiwire.TokenRequest{Namespace: namespace, Pod: pod}
	err := c.doAuth(ctx, http.MethodPost, "/api/v1/token", "Bearer "+adminToken, body, &resp, 10*time.Second)
	return &resp, err
}
