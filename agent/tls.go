package agent

import (
	"crypto/tls"
	"fmt"
	"net"

	"agent/config"
)

// loadTLS loads the listener's certificate and key. The key is a secret:
// a key file that others could read or change is refused, as the token
// file is.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("[listener] tls_cert %s / tls_key %s: %w", certFile, keyFile, err)
	}
	if err := config.CheckSecretFile(keyFile); err != nil {
		return nil, fmt.Errorf("[listener] tls_key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func tlsListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }
