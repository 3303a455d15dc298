package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/internal/files"
	"github.com/accelnode/accelnode/server/api"
)

// maxReceiptBytes bounds a receipt file: a receipt is a few hundred bytes
// plus the job's arguments.
const maxReceiptBytes = 1 << 20

func receiptCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "get" {
		return receiptGet(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, `Usage:
  accelnode receipt verify [--node FINGERPRINT] FILE|-
      check a job's signed receipt: its signature, and with --node who signed it;
      exits 1 when the receipt does not hold
  -node FINGERPRINT
      the fingerprint (SHA256:...) of the node that must have signed it
  accelnode receipt get [flags] JOB
      print the signed receipt of a finished job, as the node sent it
      ('accelnode receipt get --help' lists its flags: --node URL, --api-key)
`)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return exitError{exitNode}
	}
	flags, _ := newCommand("receipt verify", "receipt verify [--node FINGERPRINT] FILE|-", stderr)
	want := flags.String("node", "", "the fingerprint (SHA256:...) of the node that must have signed it, as `accelnode serve` prints it and /v1/node gives it")
	operands, err := parseInterleaved(flags, args[1:])
	if err != nil {
		return err
	}
	if len(operands) != 1 {
		flags.Usage()
		return exitError{exitNode}
	}
	var data []byte
	if operands[0] == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, maxReceiptBytes+1))
	} else {
		data, err = files.ReadRegular(operands[0], maxReceiptBytes)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintln(stderr, "accelnode:", err)
		return exitError{exitNotFound}
	case err != nil:
		return err
	case len(data) > maxReceiptBytes:
		return fmt.Errorf("%s: more than %d bytes: not a receipt", operands[0], maxReceiptBytes)
	}
	r, err := crypto.VerifyReceipt(data)
	if err != nil {
		fmt.Fprintf(stderr, "accelnode: %s: %v\n", operands[0], err)
		return exitError{exitFailed}
	}
	signer := receiptSigner(r)
	if *want != "" && signer != *want {
		fmt.Fprintf(stderr, "accelnode: %s: signed by %s, not by %s\n", operands[0], signer, *want)
		return exitError{exitFailed}
	}
	printReceipt(stdout, r, signer)
	return nil
}

// receiptSigner is the fingerprint of the key that signed r (checked).
func receiptSigner(r crypto.SignedReceipt) string {
	key, err := base64.StdEncoding.DecodeString(r.Receipt.Node)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return "(no key)"
	}
	return crypto.Fingerprint(key)
}

// printReceipt writes a checked receipt for people.
func printReceipt(w io.Writer, r crypto.SignedReceipt, signer string) {
	rc := r.Receipt
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "signature\tgood, by the node %s\n", signer)
	fmt.Fprintf(tw, "job\t%s, issued %s\n", rc.Job, rc.Issued)
	fmt.Fprintf(tw, "module\t%s\n", rc.Module)
	fmt.Fprintf(tw, "input\t%s\n", rc.Stdin)
	for _, m := range rc.Models {
		fmt.Fprintf(tw, "model\t%s %s\n", m.SHA256, m.Name)
	}
	fmt.Fprintf(tw, "args\t%s\n", strings.Join(rc.Args, " "))
	fmt.Fprintf(tw, "ran on\t%s (%s), %s mode, contract %s\n", rc.Backend, rc.Device, rc.Mode, rc.Contract)
	fmt.Fprintf(tw, "outcome\t%s, exit code %d, %s units\n", rc.Outcome, rc.ExitCode, rc.Units)
	fmt.Fprintf(tw, "output\t%s\n", rc.Output)
	tw.Flush()
}

// receiptGet prints a job's receipt as the node signed it, checked.
func receiptGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("receipt get", "receipt get [flags] JOB", stderr, remote)
	operands, err := parseInterleaved(flags, args)
	if err != nil {
		return err
	}
	if len(operands) != 1 {
		flags.Usage()
		return exitError{exitNode}
	}
	c, err := dial(set)
	if err != nil {
		return err
	}
	r, err := c.Receipt(ctx, operands[0])
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(r, "", "  ")
	_, err = stdout.Write(append(out, '\n'))
	return err
}

// replica is one node's answer to a replicated job.
type replica struct {
	url     string
	job     string
	receipt crypto.SignedReceipt
	signer  string
	err     error
}

// submitReplicas sends req to every node (the module first, where wasm is
// given), waits for each job and compares the outputs their signed
// receipts name. It exits 0 when every node agrees, 1 when one differs.
func submitReplicas(ctx context.Context, set *settings, urls []string, req api.JobRequest, wasm, stdin []byte, stdout io.Writer) error {
	if len(urls) < 2 {
		return errors.New("--replicas: name at least two nodes, separated by commas")
	}
	results := make([]replica, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			results[i] = runReplica(ctx, set, u, req, wasm, stdin)
		})
	}
	wg.Wait()

	// The answer most nodes gave is the reference; each other one differs.
	count := map[string]int{}
	for _, r := range results {
		if r.err == nil {
			count[r.receipt.Receipt.Output]++
		}
	}
	majority, best := "", 0
	for h, n := range count {
		if n > best || (n == best && h < majority) {
			majority, best = h, n
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSIGNER\tBACKEND\tMODE\tOUTCOME\tOUTPUT SHA256")
	agree := true
	for _, r := range results {
		if r.err != nil {
			agree = false
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tfailed: %v\n", r.url, r.err)
			continue
		}
		rc := r.receipt.Receipt
		mark := ""
		if rc.Output != majority {
			agree, mark = false, "  DIFFERS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %d\t%s%s\n", r.url, r.signer, rc.Backend, rc.Mode, rc.Outcome, rc.ExitCode, rc.Output, mark)
	}
	tw.Flush()
	if !agree {
		fmt.Fprintf(stdout, "the nodes disagree: %d of %d gave output %s\n", best, len(urls), majority)
		return exitError{exitFailed}
	}
	fmt.Fprintf(stdout, "all %d nodes agree: output %s, each receipt signed and checked\n", len(urls), majority)
	return nil
}

// runReplica runs req on the node at url and returns its checked receipt.
func runReplica(ctx context.Context, set *settings, url string, req api.JobRequest, wasm, stdin []byte) replica {
	r := replica{url: url}
	c, err := client.New(url, client.WithAPIKey(set.get(env.APIKey)), client.WithUserAgent("accelnode-cli"))
	if err != nil {
		r.err = err
		return r
	}
	if wasm != nil {
		if _, err := c.PutModule(ctx, bytes.NewReader(wasm)); err != nil {
			r.err = err
			return r
		}
	}
	if len(stdin) > maxInlineStdin {
		b, err := c.PutBlob(ctx, bytes.NewReader(stdin))
		if err != nil {
			r.err = err
			return r
		}
		req.StdinBlob = b.SHA256
	} else {
		req.Stdin = stdin
	}
	job, err := c.Submit(ctx, req, "")
	if err == nil {
		job, err = c.Wait(ctx, job.ID)
	}
	if err == nil && job.Status != api.Done {
		err = fmt.Errorf("job %s %s: %s", job.ID, job.Status, job.Node.Error)
	}
	if err != nil {
		r.err = err
		return r
	}
	r.job = job.ID
	if r.receipt, r.err = c.Receipt(ctx, job.ID); r.err == nil {
		r.signer = receiptSigner(r.receipt)
		if r.receipt.Receipt.Output != job.Result.StdoutSHA256 {
			r.err = fmt.Errorf("job %s: the receipt names output %s, the result %s", job.ID, r.receipt.Receipt.Output, job.Result.StdoutSHA256)
		}
	}
	return r
}
