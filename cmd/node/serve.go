package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/internal/bytesize"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/store"
)

// service sets where the node keeps its data and listens.
var service = group{env.Data, env.Listen}

func serveCommand(ctx context.Context, args []string, stderr io.Writer) error {
	flags, set := newCommand("serve", "serve [flags]", stderr, serving, backendOpts, limits, guests, logging, service)
	set.withModels()
	tlsCert := flags.String("tls-cert", "", "TLS certificate (PEM); with --tls-key, serve HTTPS")
	tlsKey := flags.String("tls-key", "", "TLS private key (PEM)")
	allowPublic := flags.Bool("allow-public", false, "listen on a non-loopback address although TLS or API keys are missing")
	grace := flags.Duration("grace", 30*time.Second, "on SIGTERM, how long running jobs may take to finish; the rest run again at the next start")
	d := server.DefaultLimits()
	queue := flags.Int("queue", d.Queue, "jobs waiting per backend; a full queue answers 429")
	workers := flags.Int("workers", d.Workers, "jobs running at once per CPU backend")
	gpuWorkers := flags.Int("gpu-workers", d.GPUWorkers, "jobs running at once on a GPU backend")
	maxUpload := flags.String("max-upload", bytesize.Format(d.MaxUpload), "largest model upload")
	maxModule := flags.String("max-module", bytesize.Format(d.MaxModule), "largest module, and largest blob sent in one request")
	keyBytes := flags.String("key-bytes", bytesize.Format(d.Quota.Bytes), "bytes each API key may store (its own quota in keys.json overrides this)")
	modules := flags.Int("modules", d.Modules, "compiled modules kept in memory; the least recently used are compiled again when needed")
	keyJobs := flags.Int("key-jobs", d.Quota.Jobs, "jobs each API key may have queued or running")
	readTimeout := flags.Duration("read-timeout", 5*time.Minute, "longest time to read a request, body included; slower clients are cut off")
	writeTimeout := flags.Duration("write-timeout", 2*time.Minute, "longest time to write an answer, beyond the waits a request asks for")
	logFormat := flags.String("log-format", "json", "log format on stderr: json or text")
	sessionTTL := flags.Duration("session-ttl", 300*time.Second, "how long an encrypted session lives; clients may ask for less")
	web := addWebFlags(flags)
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		flags.Usage()
		return exitError{exitNode}
	}
	log, err := set.logger(stderr)
	if err != nil {
		return err
	}
	if *logFormat == "json" {
		var level slog.Level
		level.UnmarshalText([]byte(strings.ToUpper(set.get(env.LogLevel))))
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	} else if *logFormat != "text" {
		return fmt.Errorf("--log-format: %q (want json or text)", *logFormat)
	}
	limits := server.DefaultLimits()
	limits.Queue, limits.Workers, limits.GPUWorkers, limits.Quota.Jobs, limits.Modules = *queue, *workers, *gpuWorkers, *keyJobs, *modules
	for _, f := range []struct {
		name, v string
		dst     *int64
	}{{"--max-upload", *maxUpload, &limits.MaxUpload}, {"--max-module", *maxModule, &limits.MaxModule}, {"--key-bytes", *keyBytes, &limits.Quota.Bytes}} {
		n, err := bytesize.Parse(f.v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s: %q is not a positive size", f.name, f.v)
		}
		*f.dst = n
	}
	limits.MaxBlob = limits.MaxModule
	for _, v := range []struct {
		name string
		n    int
	}{{"--queue", *queue}, {"--workers", *workers}, {"--gpu-workers", *gpuWorkers}, {"--key-jobs", *keyJobs}, {"--modules", *modules}} {
		if v.n <= 0 {
			return fmt.Errorf("%s: %d (want at least 1)", v.name, v.n)
		}
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}

	dataDir := set.get(env.Data)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	keys, err := server.LoadKeys(filepath.Join(dataDir, "keys.json"))
	if err != nil {
		return err
	}
	addr := set.get(env.Listen)
	if err := checkExposure(addr, *tlsCert != "", keys.Len() > 0, *allowPublic); err != nil {
		return err
	}

	cfg, err := set.config(log)
	if err != nil {
		return err
	}
	limits.Job = cfg.Limits
	if *sessionTTL <= 0 {
		return fmt.Errorf("--session-ttl: %v (want a positive duration)", *sessionTTL)
	}
	identity, created, err := crypto.LoadOrCreateIdentity(dataDir)
	if err != nil {
		return err
	}
	if created {
		log.Info("made the node's identity key", "file", filepath.Join(dataDir, crypto.IdentityFile))
	}
	webData, webModules, err := web.load(log)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(dataDir, "store"), store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg.Actors, cfg.SnapshotKey = st, identity.DeriveKey(server.SnapshotPurpose)
	n, err := node.Open(ctx, cfg)
	if err != nil {
		return withModeHint(err)
	}
	defer n.Close()
	srv, err := server.New(server.Config{
		Node: n, Store: st, Keys: keys, Catalog: filepath.Join(dataDir, "models.json"),
		Limits: limits, Logger: log, Version: buildVersion(), Identity: identity, SessionTTL: *sessionTTL,
		WebData: webData, WebModules: webModules,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       *readTimeout,
		WriteTimeout:      *writeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	hs.Protocols.SetHTTP1(true)
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
		hs.Protocols.SetHTTP2(true)
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		hs.Protocols.SetUnencryptedHTTP2(true) // h2c
	}
	log.Info("serving", "url", scheme+"://"+ln.Addr().String(), "data", dataDir, "backend", n.Backend().Name(),
		"mode", cfg.Mode.String(), "keys", keys.Len(), "fingerprint", identity.Fingerprint())

	served := make(chan error, 1)
	go func() {
		if *tlsCert != "" {
			served <- hs.ServeTLS(ln, *tlsCert, *tlsKey)
		} else {
			served <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "cause", context.Cause(ctx).Error(), "grace", *grace)
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *grace)
	defer cancel()
	errs := []error{srv.Shutdown(gctx)}
	// Requests still waiting on jobs have their answer or must retry now.
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer hcancel()
	if err := hs.Shutdown(hctx); err != nil {
		hs.Close()
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// checkExposure refuses a public address unless the node has TLS and API
// keys, or the operator said so explicitly.
func checkExposure(addr string, tls, keys, allowPublic bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if (tls && keys) || allowPublic {
		return nil
	}
	var missing []string
	if !tls {
		missing = append(missing, "TLS (--tls-cert, --tls-key)")
	}
	if !keys {
		missing = append(missing, "API keys (accelnode keys add)")
	}
	return fmt.Errorf("--listen %s is not a loopback address and the node has no %s: anyone who reaches it could run guests; pass --allow-public to listen there anyway", addr, strings.Join(missing, " and no "))
}

// keysCommand manages the API keys in the data directory.
func keysCommand(args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("keys", "keys add NAME [--scopes invoke,upload] | keys list", stderr, group{env.Data})
	scopes := flags.String("scopes", "invoke,upload", "comma-separated scopes of a new key: invoke, upload, admin")
	var verb string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if err := parse(flags, args); err != nil {
		return err
	}
	keys, err := server.LoadKeys(filepath.Join(set.get(env.Data), "keys.json"))
	if err != nil {
		return err
	}
	switch {
	case verb == "add" && flags.NArg() == 1:
		token, err := keys.Add(flags.Arg(0), strings.Split(*scopes, ","))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "key %s added with scopes %s; its token is shown this once:\n", flags.Arg(0), *scopes)
		fmt.Fprintln(stdout, token)
		return nil
	case verb == "list" && flags.NArg() == 0:
		for _, k := range keys.List() {
			fmt.Fprintf(stdout, "%-20s %s\n", k.Name, strings.Join(k.Scopes, ","))
		}
		return nil
	}
	flags.Usage()
	return exitError{exitNode}
}
