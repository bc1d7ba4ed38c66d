package xdsserver

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skein-mesh/skein/internal/model"
)

// Peer is who opened an ADS stream, as its token says: istiod's
// authenticated caller (the service-account JWT's namespace, service
// account and, for bound tokens, pod).
type Peer struct {
	Namespace      string
	ServiceAccount string
	Pod            string // "" when the token names no pod
}

// Authenticator establishes the Peer of a stream from its gRPC metadata
// (`authorization: Bearer <token>`), or answers a codes.Unauthenticated
// status error.
type Authenticator interface {
	AuthenticateStream(ctx context.Context) (Peer, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context) (Peer, error)

// AuthenticateStream calls f.
func (f AuthenticatorFunc) AuthenticateStream(ctx context.Context) (Peer, error) { return f(ctx) }

// streamAuth holds the authenticator and each open stream's peer.
type streamAuth struct {
	auth  Authenticator // nil: streams are not authenticated (tests only)
	mu    sync.Mutex
	peers map[int64]Peer // by stream id
}

// SetAuthenticator makes every ADS stream authenticate before it is
// served; call it before serving.
func (s *Server) SetAuthenticator(a Authenticator) { s.auth.auth = a }

// authenticate runs when a stream opens: no resource is sent to a stream
// whose token is missing or refused.
func (s *Server) authenticate(ctx context.Context, st *adsStream) error {
	if s.auth.auth == nil {
		return nil
	}
	p, err := s.auth.auth.AuthenticateStream(ctx)
	if err != nil {
		s.log.Warn("xDS stream refused", "err", err)
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Unauthenticated, err.Error())
		}
		return err
	}
	s.auth.mu.Lock()
	if s.auth.peers == nil {
		s.auth.peers = map[int64]Peer{}
	}
	s.auth.peers[st.id] = p
	s.auth.mu.Unlock()
	return nil
}

// forget drops a closed stream's peer.
func (s *Server) forget(st *adsStream) {
	s.auth.mu.Lock()
	delete(s.auth.peers, st.id)
	s.auth.mu.Unlock()
}

func (s *Server) peerOf(stream int64) (Peer, bool) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	p, ok := s.auth.peers[stream]
	return p, ok
}

// authorizeNode binds the node a stream announces to its peer, as istiod
// does: the node's namespace (and pod, when the token names one) must be
// the token's, and its SERVICE_ACCOUNT, when sent, the token's; the
// token's service account then becomes the proxy's. A node ID already
// connected from another identity is refused, so an impostor never
// displaces the real proxy's stream.
func (s *Server) authorizeNode(st *adsStream, proxy *model.Proxy) error {
	if s.auth.auth == nil {
		return nil
	}
	p, ok := s.peerOf(st.id)
	if !ok {
		return status.Error(codes.Unauthenticated, "stream was not authenticated")
	}
	if err := bindNode(p, proxy); err != nil {
		s.log.Warn("xDS stream refused", "proxy", proxy.ID, "err", err)
		return status.Error(codes.PermissionDenied, err.Error())
	}
	s.mu.Lock()
	old := s.proxies[proxy.ID]
	s.mu.Unlock()
	if old != nil && old.stream != st.id {
		if op, live := s.peerOf(old.stream); live && op != p {
			err := fmt.Errorf("node %q is connected from identity %s/%s; a stream from %s/%s may not replace it",
				proxy.ID, op.Namespace, op.ServiceAccount, p.Namespace, p.ServiceAccount)
			s.log.Warn("xDS stream refused", "proxy", proxy.ID, "err", err)
			return status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return nil
}

// bindNode checks proxy against peer p and gives it p's service account.
func bindNode(p Peer, proxy *model.Proxy) error {
	if proxy.Namespace != p.Namespace {
		return fmt.Errorf("node %q is in namespace %q, the token is for %q", proxy.ID, proxy.Namespace, p.Namespace)
	}
	if p.Pod != "" && proxy.PodName != p.Pod {
		return fmt.Errorf("node %q names pod %q, the token is for pod %q", proxy.ID, proxy.PodName, p.Pod)
	}
	if proxy.ServiceAccount != "" && proxy.ServiceAccount != p.ServiceAccount {
		return fmt.Errorf("node %q claims service account %q, the token is for %q", proxy.ID, proxy.ServiceAccount, p.ServiceAccount)
	}
	proxy.ServiceAccount = p.ServiceAccount
	return nil
}
