// Package apiwire is the config API's wire contract, the one definition
// both the server (internal/configapi, internal/discovery) and the client
// (internal/apiclient) use: request and response bodies, error reasons and
// where the client credential lives.
package apiwire

import (
	"os"
	"path/filepath"
	"time"

	"github.com/skein-mesh/skein/internal/config"
)

// Reasons in error answers, as in Kubernetes' Status.reason.
const (
	ReasonBadRequest       = "BadRequest"
	ReasonInvalid          = "Invalid"
	ReasonNotFound         = "NotFound"
	ReasonInternal         = "InternalError"
	ReasonUnauthorized     = "Unauthorized"
	ReasonForbidden        = "Forbidden"
	ReasonUnsupportedMedia = "UnsupportedMediaType"
)

// ApplyRequest is the body of POST /api/v1/apply.
type ApplyRequest struct {
	Objects []map[string]any `json:"objects"`
}

// DeleteRequest is the body of POST /api/v1/delete.
type DeleteRequest struct {
	Keys []config.Key `json:"keys"`
}

// ResultsResponse answers apply and delete.
type ResultsResponse struct {
	Results []config.ApplyResult `json:"results"`
}

// ObjectsResponse answers GET /api/v1/objects/<Kind>.
type ObjectsResponse struct {
	Revision int64            `json:"revision"`
	Objects  []map[string]any `json:"objects"`
}

// WatchResponse answers GET /api/v1/watch.
type WatchResponse struct {
	Revision int64 `json:"revision"`
}

// ErrorResponse is the body of every 4xx/5xx answer.
type ErrorResponse struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

// TokenRequest is the body of POST /api/v1/token.
type TokenRequest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
}

// TokenResponse answers it.
type TokenResponse struct {
	Token          string    `json:"token"`
	ServiceAccount string    `json:"serviceAccount"`
	Expiry         time.Time `json:"expiry"`
}

// RedactedDataAnnotation is set on Secrets the API answers: their data
// values are emptied and this annotation lists each key with its size, as
// `kubectl describe secret` shows them.
const RedactedDataAnnotation = "skein.io/redacted-data"

// CredentialFile is the client credential discovery writes (0600) in its
// CA directory on first start: the admin bearer token of the config API.
const CredentialFile = "admin-token"

// CredentialEnv names a credential file explicitly (as KUBECONFIG does).
const CredentialEnv = "SKEIN_CREDENTIAL_FILE"

// DefaultCredentialPath is where a client looks for the credential: the
// file $SKEIN_CREDENTIAL_FILE names, else <data dir>/ca/admin-token where
// the data dir is $SKEIN_HOME or ~/.skein (skein up's default).
func DefaultCredentialPath() string {
	if p := os.Getenv(CredentialEnv); p != "" {
		return p
	}
	dir := os.Getenv("SKEIN_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".skein")
	}
	return filepath.Join(dir, "ca", CredentialFile)
}
