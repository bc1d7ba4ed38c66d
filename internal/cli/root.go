// Package cli wires Skein's cobra commands. Commands are thin: they parse
// flags and call into the domain packages.
package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skein-mesh/skein/internal/apiclient"
	"github.com/skein-mesh/skein/internal/apiwire"
)

// Execute runs the skein command line and returns the process exit code.
func Execute() int {
	root := NewRootCmd()
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) && ee.msg == "" {
			return ee.code // already reported
		}
		// kubectl prints server errors ("Error from server (NotFound): ...") as they are.
		if msg := err.Error(); strings.HasPrefix(msg, "Error from server") {
			fmt.Fprintln(os.Stderr, msg)
		} else {
			fmt.Fprintln(os.Stderr, "Error:", msg)
		}
		if ee != nil {
			return ee.code
		}
		return 1
	}
	return 0
}

// globalFlags are shared by every command that talks to the control plane.
type globalFlags struct {
	server    string // control plane HTTP address (config API, debug)
	namespace string
	logLevel  string
	// credentialFile holds the config API credential (default: the
	// data dir's ca/admin-token).
	credentialFile string
}

var global globalFlags

// NewRootCmd builds the command tree.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "skein",
		Short:         "Skein: an Istio-compatible service mesh in one Go binary",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			setupLogging(global.logLevel)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&global.server, "server", envOr("SKEIN_SERVER", "127.0.0.1:15014"), "control plane address (host:port of skein discovery's HTTP port)")
	pf.StringVarP(&global.namespace, "namespace", "n", "", "namespace (default \"default\")")
	pf.StringVar(&global.credentialFile, "credential-file", "", "file holding the control plane's admin credential (default $"+apiwire.CredentialEnv+", else $SKEIN_HOME/ca/admin-token or ~/.skein/ca/admin-token)")
	pf.StringVar(&global.logLevel, "log-level", envOr("SKEIN_LOG_LEVEL", "info"), "log level: debug, info, warn, error")

	root.AddCommand(
		newVersionCmd(), newProxyCmd(),
		newDiscoveryCmd(),
		newProxyStatusCmd(), newProxyConfigCmd(),
		newBookinfoCmd(),
		newApplyCmd(), newDiffCmd(), newGetCmd(), newDeleteCmd(),
		newUpCmd(),
		newDashboardCmd(),
		newKubeInjectCmd(),
		newInstallCmd(), newManifestCmd(), newUninstallCmd(),
		newNodeCmd(),
		newIptablesCmd(),
		newAnalyzeCmd(),
	)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func setupLogging(level string) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
}

// exitError ends the command with code. Without msg the command has
// already printed its own messages (kubectl apply's partial failures,
// diff's "differences found"); with one, it is printed as any error is.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.msg
}

// newAPIClient is the config API client every command uses: it sends the
// credential from --credential-file, else the default location
// (apiwire.DefaultCredentialPath), as kubectl reads its kubeconfig.
func newAPIClient(server string) *apiclient.Client {
	if global.credentialFile != "" {
		tok, err := apiclient.ReadCredential(global.credentialFile)
		if err != nil {
			slog.Warn("cannot read the credential file; calling the control plane without a credential", "file", global.credentialFile, "err", err)
		}
		return apiclient.NewWithToken(server, tok)
	}
	return apiclient.New(server)
}
