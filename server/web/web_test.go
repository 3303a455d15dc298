package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/servertest"
	"github.com/accelnode/accelnode/server/web"
)

// The page's tests run it in Debian's chromium (scripts/install-chromium.sh),
// headless, against a real server on loopback, and check what it shows.
// ACCELNODE_SCREENSHOTS=DIR (relative to the repository's root) writes a
// screenshot of each tab there: page-tsne.png, page-digits.png and
// page-split.png.

var train = flag.Bool("web.train", false, "train the small stand-in model even where bin/mnist.onnx exists")

const chromium = "/usr/bin/chromium"

// TestCanonicalCopy keeps the page's copy of canonical.js the file the
// crypto package's interop test runs.
func TestCanonicalCopy(t *testing.T) {
	sameAs(t, "canonical.js", "crypto/interop/canonical.js")
}

// TestSplitJSCopy keeps the page's copy of split.js the file
// examples/split-dense's tests check against splitnet.
func TestSplitJSCopy(t *testing.T) {
	sameAs(t, "split.js", "examples/split-dense/split.js")
}

// sameAs checks that the static file name is the repository's file path.
func sameAs(t *testing.T, name, path string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(root(t), filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.ReadFile(web.Files(), name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("server/web/static/%s differs from %s: copy it again", name, path)
	}
}

// TestFiles checks what the static handler serves and refuses.
func TestFiles(t *testing.T) {
	ts := httptest.NewServer(web.Handler(web.Files()))
	defer ts.Close()
	for _, c := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/", 200, "text/html"},
		{"/web/app.js", 200, "text/javascript"},
		{"/web/style.css", 200, "text/css"},
		{"/web/canonical.js", 200, "text/javascript"},
		{"/web/split.js", 200, "text/javascript"},
		{"/web/", 404, ""},
		{"/web/vendor/", 404, ""},
		{"/web/nothing.js", 404, ""},
		{"/web/../web.go", 404, ""},
	} {
		res, err := http.Get(ts.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, res.StatusCode, res.Header.Get("Content-Type"), c.status, c.ctype)
		}
		if c.status == 200 && !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no content security policy", c.path)
		}
	}
}

// TestRoutes checks the page's API routes on a node with keys: the digits,
// and the page's guests stored for a key that may only invoke.
func TestRoutes(t *testing.T) {
	data, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	tsne := []byte("\x00asm\x01\x00\x00\x00") // the smallest module
	var token string
	srv := servertest.Start(t, servertest.Options{WebData: data, WebModules: map[string][]byte{"tsne": tsne},
		Keys: func(k *server.Keys) {
			var err error
			if token, err = k.Add("page", []string{server.ScopeInvoke}); err != nil {
				t.Fatal(err)
			}
		}})
	base := srv.URL
	call := func(method, path, token string, want int, v any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d", method, path, res.StatusCode, want)
		}
		if v != nil {
			if err := json.NewDecoder(res.Body).Decode(v); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
	}
	call("GET", "/", "", 200, nil) // the page itself answers anyone
	call("GET", "/web/mnist?n=3", "", 401, nil)
	var sample web.Sample
	call("GET", "/web/mnist?n=3", token, 200, &sample)
	if sample.N != 3 || sample.Rows != 28 || len(sample.Pixels) != 3*784 || fmt.Sprint(sample.Labels) != "[7 2 1]" {
		t.Errorf("three digits: n %d, %dx%d, %d pixels, labels %v", sample.N, sample.Rows, sample.Cols, len(sample.Pixels), sample.Labels)
	}
	call("GET", "/web/mnist?n=0", token, 400, nil)
	call("GET", "/web/mnist?n=10001", token, 400, nil)
	var config struct {
		Modules map[string]string
		Digits  bool
	}
	call("GET", "/web/config", token, 200, &config)
	if len(config.Modules) != 1 || config.Modules["tsne"] == "" || !config.Digits {
		t.Errorf("config %+v", config)
	}
	var blob struct{ SHA256 string }
	call("POST", "/web/modules/tsne", token, 200, &blob)
	if blob.SHA256 != config.Modules["tsne"] {
		t.Errorf("stored %s, want %s", blob.SHA256, config.Modules["tsne"])
	}
	call("GET", "/v1/modules/"+blob.SHA256, token, 200, nil) // the key's now
	call("POST", "/web/modules/tsne", token, 200, &blob)     // again: a reference
	var problem struct{ Detail string }
	call("POST", "/web/modules/mnist", token, 404, &problem)
	if !strings.Contains(problem.Detail, "--web-module mnist=") {
		t.Errorf("an absent guest: %q", problem.Detail)
	}

	base = servertest.Start(t, servertest.Options{}).URL // no digits
	call("GET", "/web/mnist?n=3", "", 404, &problem)
	if !strings.Contains(problem.Detail, "offers no MNIST digits") {
		t.Errorf("a node without digits: %q", problem.Detail)
	}
}

// TestPage runs both flows end to end: t-SNE of real digits, then digits
// drawn on the canvas, recognised by the node's model, first without the
// model and then with it.
func TestPage(t *testing.T) {
	needBrowser(t)
	data := needDigits(t)
	srv := servertest.Start(t, servertest.Options{WebData: data, WebModules: guests(t)})
	p := openBrowser(t)
	fingerprint := nodeFingerprint(t, srv.URL, "")
	shots := screenshots(t)

	t.Run("tsne", func(t *testing.T) {
		p.t = t
		n, iters := "200", "250"
		if shots != "" {
			n, iters = "2000", "1000" // a picture worth looking at
		}
		p.do(chromedp.Navigate(srv.URL+"/#tsne"), chromedp.WaitEnabled(chromedp.ID("tsne-run")),
			chromedp.SetValue(chromedp.ID("tsne-n"), n), chromedp.SetValue(chromedp.ID("tsne-iters"), iters),
			chromedp.Click(chromedp.ID("tsne-run")))
		p.waitEither("tsne-receipt", "tsne-problem", 3*time.Minute)
		if msg := p.text("tsne-problem"); p.visible("tsne-problem") {
			t.Fatalf("the page shows a problem: %s", msg)
		}
		if got := eval[string](p, `document.getElementById('tsne-plot').dataset.points`); got != n {
			t.Errorf("the plot holds %s points, want %s", got, n)
		}
		if got := eval[string](p, `document.getElementById('tsne-plot').dataset.labels`); got != "10" {
			t.Errorf("the plot holds %s labels, want 10", got)
		}
		if got := p.text("tsne-summary"); got != n+" points, 10 labels" {
			t.Errorf("summary %q", got)
		}
		if kl := eval[string](p, `document.getElementById('tsne-kl').dataset.points`); kl == "" || kl == "0" {
			t.Error("the KL curve is empty")
		}
		receipt := p.text("tsne-receipt")
		if !strings.HasPrefix(receipt, "Receipt verified, signed by "+fingerprint) {
			t.Errorf("receipt: %q, want it verified and signed by %s", receipt, fingerprint)
		}
		facts := p.text("tsne-facts")
		for _, want := range []string{"Backend", "ref", "strict mode", "Time on the node", "Trustworthiness"} {
			if !strings.Contains(facts, want) {
				t.Errorf("the run's facts lack %q: %q", want, facts)
			}
		}
		p.screenshot(shots, "page-tsne.png")
	})

	t.Run("digits", func(t *testing.T) {
		p.t = t
		test, err := mnist.LoadFirst(data, "t10k", 8)
		if err != nil {
			t.Fatal(err)
		}
		p.do(chromedp.Click(chromedp.ID("tab-digits")), chromedp.WaitVisible(chromedp.ID("digit-pad")))

		// Without the model, the page says what is missing.
		p.paint(test.Image(0))
		p.recognise()
		if !p.visible("digit-problem") || !strings.Contains(p.text("digit-problem"), "no model named “mnist”") {
			t.Fatalf("without the model the page shows %q", p.text("digit-problem"))
		}

		if _, err := srv.Node.Models().Add("mnist", model(t)); err != nil {
			t.Fatal(err)
		}
		for i := range test.N {
			p.paint(test.Image(i))
			probs := p.recognise()
			if p.visible("digit-problem") {
				t.Fatalf("digit %d: the page shows a problem: %s", i, p.text("digit-problem"))
			}
			sum, best := 0.0, 0
			for c, v := range probs {
				sum += v
				if v > probs[best] {
					best = c
				}
			}
			if len(probs) != 10 || math.Abs(sum-1) > 1e-3 {
				t.Errorf("digit %d: %d probabilities summing to %g, want 10 summing to 1", i, len(probs), sum)
			}
			if best != int(test.Labels[i]) {
				t.Errorf("test digit %d, a %d drawn on the canvas, recognised as %d: %v", i, test.Labels[i], best, probs)
			}
			if r := p.text("digit-receipt"); !strings.HasPrefix(r, "Receipt verified, signed by "+fingerprint) {
				t.Errorf("digit %d: receipt %q", i, r)
			}
		}

		// A 7 drawn with the mouse: the pointer events ink the pad, and the
		// page recognises what was drawn.
		p.do(chromedp.Click(chromedp.ID("digit-clear")))
		p.drawWithMouse([][2]float64{{70, 60}, {120, 58}, {170, 57}, {210, 58}, {195, 95}, {175, 135}, {158, 175}, {145, 215}, {138, 240}})
		if eval[bool](p, `document.getElementById('digit-run').disabled`) {
			t.Fatal("after a stroke with the mouse, Recognise is still disabled: the pad saw no ink")
		}
		probs := p.recognise()
		if len(probs) != 10 {
			t.Fatalf("the mouse-drawn digit got %d probabilities (%s)", len(probs), p.text("digit-problem"))
		}
		t.Logf("a 7 drawn with the mouse: %s", p.text("digit-answer"))
		p.screenshot(shots, "page-digits.png")

		// A touch stroke inks the pad too.
		p.do(chromedp.Click(chromedp.ID("digit-clear")))
		p.drawWithTouch([][2]float64{{140, 40}, {140, 120}, {140, 230}})
		if eval[bool](p, `document.getElementById('digit-run').disabled`) {
			t.Error("after a stroke with a finger, Recognise is still disabled: the pad saw no ink")
		}
	})
}

// TestPageSessionsAndKeys runs the page against a node with API keys, no
// MNIST digits to offer and sessions of one second: it asks for a key and
// keeps it in the tab, says what the node lacks, and opens a new session,
// saying so, when the one it had has expired.
func TestPageSessionsAndKeys(t *testing.T) {
	needBrowser(t)
	data := needDigits(t)
	var token string
	srv := servertest.Start(t, servertest.Options{WebModules: guests(t), SessionTTL: time.Second,
		Keys: func(k *server.Keys) {
			var err error
			if token, err = k.Add("page", []string{server.ScopeInvoke}); err != nil {
				t.Fatal(err)
			}
		}})
	if _, err := srv.Node.Models().Add("mnist", model(t)); err != nil {
		t.Fatal(err)
	}
	p := openBrowser(t)
	fingerprint := nodeFingerprint(t, srv.URL, token)

	p.do(chromedp.Navigate(srv.URL+"/#digits"), chromedp.WaitVisible(chromedp.ID("key-form")))
	p.do(chromedp.SendKeys(chromedp.ID("key-input"), "acn_wrong"), chromedp.Click(chromedp.CSS("#key-form button[type=submit]")))
	p.waitFor(`!document.getElementById('key-problem').hidden`, 10*time.Second)
	if got := p.text("key-problem"); !strings.Contains(got, "refused this API key") {
		t.Errorf("a wrong key: %q", got)
	}
	p.do(chromedp.SendKeys(chromedp.ID("key-input"), token), chromedp.Click(chromedp.CSS("#key-form button[type=submit]")))
	p.waitFor(`document.getElementById('key-form').hidden && document.getElementById('fact-backend').textContent !== '–'`, 0)
	if got := eval[string](p, `sessionStorage.getItem('accelnode.token')`); got != token {
		t.Errorf("session storage holds %q, want the key", got)
	}
	if got := p.text("panel-tsne"); !strings.Contains(got, "This node offers no MNIST digits") {
		t.Errorf("the t-SNE tab does not say the node offers no digits: %q", got)
	}

	test, err := mnist.LoadFirst(data, "t10k", 1)
	if err != nil {
		t.Fatal(err)
	}
	p.paint(test.Image(0))
	if probs := p.recognise(); len(probs) != 10 {
		t.Fatalf("no probabilities: %s", p.text("digit-problem"))
	}
	if eval[int](p, `document.querySelectorAll('#panel-digits .notice-line').length`) != 0 {
		t.Errorf("a notice on the first job: %s", p.text("panel-digits"))
	}
	time.Sleep(1500 * time.Millisecond) // the session expires
	probs := p.recognise()
	if len(probs) != 10 {
		t.Fatalf("after the session expired: %s", p.text("digit-problem"))
	}
	if got := p.text("panel-digits"); !strings.Contains(got, "Your encrypted session had expired, so the page opened a new one and sent the request again.") {
		t.Errorf("the page does not say the session expired: %q", got)
	}
	if r := p.text("digit-receipt"); !strings.HasPrefix(r, "Receipt verified, signed by "+fingerprint) {
		t.Errorf("receipt %q", r)
	}
}

// TestPageWithoutTweetNaCl serves the page from a build without
// tweetnacl-js: it must say so in words, and send nothing.
func TestPageWithoutTweetNaCl(t *testing.T) {
	needBrowser(t)
	files := fstest.MapFS{}
	err := fs.WalkDir(web.Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == web.NaClFile {
			return err
		}
		b, err := fs.ReadFile(web.Files(), path)
		files[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", web.Handler(files))
	mux.Handle("GET /web/", web.Handler(files))
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.Path)
		mu.Unlock()
		http.Error(w, "no node here", http.StatusNotFound)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	p := openBrowser(t)
	p.do(chromedp.Navigate(ts.URL + "/"))
	p.waitFor(`!document.getElementById('banner').hidden`, 10*time.Second)
	if got := p.text("banner"); !strings.Contains(got, "tweetnacl is missing from this build: run make deps") {
		t.Errorf("banner %q", got)
	}
	if !eval[bool](p, `document.getElementById('tsne-run').disabled && document.getElementById('digit-run').disabled && document.getElementById('split-run').disabled`) {
		t.Error("the page lets jobs run without tweetnacl")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) > 0 {
		t.Errorf("the page asked the node %v without tweetnacl", asked)
	}
}

// ---- the browser ----

type page struct {
	t   *testing.T
	ctx context.Context

	mu         sync.Mutex
	exceptions []string
}

func needBrowser(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s is missing (scripts/install-chromium.sh installs it): %v", chromium, err)
	}
}

func needDigits(t *testing.T) string {
	t.Helper()
	if !web.HasNaCl() {
		t.Skip("tweetnacl-js is missing from server/web/static/vendor: run make deps")
	}
	dir, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	return dir
}

// openBrowser starts a headless chromium with a fresh profile, with the
// flags that keep it from reaching for the network.
func openBrowser(t *testing.T) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 960),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	p := &page{t: t, ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 960)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p.mu.Lock()
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			p.exceptions = append(p.exceptions, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			p.mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			t.Logf("console.%s: %s", ev.Type, strings.Join(args, " "))
		}
	})
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.exceptions {
			t.Errorf("the page threw: %s", e)
		}
	})
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatal(err)
	}
}

func eval[T any](p *page, js string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitFor waits until the expression is true; 0 is 30 seconds.
func (p *page) waitFor(js string, d time.Duration) {
	p.t.Helper()
	if d == 0 {
		d = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(p.ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		p.t.Fatalf("waiting for %s: %v", js, err)
	}
}

// waitEither waits until one of two elements is visible.
func (p *page) waitEither(a, b string, d time.Duration) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf(`!document.getElementById(%q).hidden || !document.getElementById(%q).hidden`, a, b), d)
}

func (p *page) text(id string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`document.getElementById(%q).innerText`, id))
}

func (p *page) visible(id string) bool {
	p.t.Helper()
	return eval[bool](p, fmt.Sprintf(`!document.getElementById(%q).hidden`, id))
}

// paint draws a 28×28 MNIST image onto the pad, each pixel a 10×10 square
// of its grey, dark ink on white as the page draws, and lets the page look.
func (p *page) paint(img []uint8) {
	p.t.Helper()
	eval[bool](p, fmt.Sprintf(`(() => {
		const px = %s;
		const c = document.getElementById('digit-pad'), ctx = c.getContext('2d');
		ctx.fillStyle = '#fff';
		ctx.fillRect(0, 0, c.width, c.height);
		for (let i = 0; i < 784; i++) {
			const v = 255 - px[i];
			ctx.fillStyle = 'rgb(' + v + ',' + v + ',' + v + ')';
			ctx.fillRect((i %% 28) * 10, Math.floor(i / 28) * 10, 10, 10);
		}
		accelnodePage.padChanged();
		return true;
	})()`, intList(img)))
}

func intList(b []uint8) string {
	s := make([]string, len(b))
	for i, v := range b {
		s[i] = fmt.Sprint(v)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// recognise clicks Recognise and returns the probabilities the bars show,
// or none where the page shows a problem.
func (p *page) recognise() []float64 {
	p.t.Helper()
	eval[bool](p, `document.getElementById('digit-bars').replaceChildren(), document.getElementById('digit-receipt').hidden = true, true`)
	p.do(chromedp.WaitEnabled(chromedp.ID("digit-run")), chromedp.Click(chromedp.ID("digit-run")))
	p.waitFor(`!document.getElementById('digit-receipt').hidden || !document.getElementById('digit-problem').hidden`, time.Minute)
	var probs []float64
	for _, s := range eval[[]string](p, `Array.from(document.querySelectorAll('#digit-bars li'), (li) => li.dataset.p)`) {
		var v float64
		fmt.Sscan(s, &v)
		probs = append(probs, v)
	}
	return probs
}

// padOrigin is the pad's top left corner in the viewport.
func (p *page) padOrigin() (float64, float64) {
	xy := eval[[]float64](p, `(() => { const r = document.getElementById('digit-pad').getBoundingClientRect(); return [r.left, r.top]; })()`)
	return xy[0], xy[1]
}

func (p *page) drawWithMouse(path [][2]float64) {
	p.t.Helper()
	x0, y0 := p.padOrigin()
	held := func(e *input.DispatchMouseEventParams) { e.Button = input.MouseButtonLeft; e.Buttons = 1 }
	steps := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(chromedp.MouseMoved, x0+path[0][0], y0+path[0][1]),
		chromedp.MouseEvent(chromedp.MousePressed, x0+path[0][0], y0+path[0][1], held, chromedp.ClickCount(1))}
	for i := 1; i < len(path); i++ {
		a, b := path[i-1], path[i]
		for k := 1; k <= 6; k++ { // several moves a segment, as a hand makes
			f := float64(k) / 6
			steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x0+a[0]+f*(b[0]-a[0]), y0+a[1]+f*(b[1]-a[1]), held))
		}
	}
	last := path[len(path)-1]
	steps = append(steps, chromedp.MouseEvent(chromedp.MouseReleased, x0+last[0], y0+last[1], held, chromedp.ClickCount(1)))
	p.do(steps...)
}

func (p *page) drawWithTouch(path [][2]float64) {
	p.t.Helper()
	x0, y0 := p.padOrigin()
	touch := func(typ input.DispatchTouchEventType, pts ...[2]float64) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			var tp []*input.TouchPoint
			for _, pt := range pts {
				tp = append(tp, &input.TouchPoint{X: x0 + pt[0], Y: y0 + pt[1]})
			}
			if tp == nil {
				tp = []*input.TouchPoint{}
			}
			_, err := cdp.Call(ctx, t, input.DispatchTouchEvent, input.DispatchTouchEventParams{Type: typ, TouchPoints: tp})
			return err
		})
	}
	steps := []chromedp.Action[chromedp.Void]{touch(input.DispatchTouchEventTypeTouchStart, path[0])}
	for _, pt := range path[1:] {
		steps = append(steps, touch(input.DispatchTouchEventTypeTouchMove, pt))
	}
	steps = append(steps, touch(input.DispatchTouchEventTypeTouchEnd))
	p.do(steps...)
}

// screenshot writes the whole page as a PNG into dir, where one is given.
func (p *page) screenshot(dir, name string) {
	p.t.Helper()
	if dir == "" {
		return
	}
	p.do(chromedp.Sleep(300 * time.Millisecond)) // the bars' transition
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("wrote %s", path)
}

// ---- the node ----

// guests builds the page's two guests.
func guests(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"tsne":  guesttest.Build(t, "github.com/accelnode/accelnode/examples/tsne-mnist"),
		"mnist": guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist-classify"),
	}
}

func nodeFingerprint(t *testing.T, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/node", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var id struct{ Fingerprint string }
	if err := json.NewDecoder(res.Body).Decode(&id); err != nil || !strings.HasPrefix(id.Fingerprint, "SHA256:") {
		t.Fatalf("GET /v1/node: %v, fingerprint %q", err, id.Fingerprint)
	}
	return id.Fingerprint
}

// screenshots is the directory ACCELNODE_SCREENSHOTS names, relative to the
// repository's root, or "".
func screenshots(t *testing.T) string {
	dir := os.Getenv("ACCELNODE_SCREENSHOTS")
	if dir == "" || filepath.IsAbs(dir) {
		return dir
	}
	return filepath.Join(root(t), dir)
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

// model is the MNIST model the page's digits go to: the trained network
// `make demo` exports as bin/mnist.onnx where it exists, otherwise a
// softmax regression trained here on 12,000 training digits in about a
// second (about 91 % accurate on the test digits, enough for the clear
// ones the test draws).
func model(t *testing.T) []byte {
	t.Helper()
	if !*train {
		b, err := os.ReadFile(filepath.Join(root(t), "bin", "mnist.onnx"))
		if err == nil {
			t.Log("model: bin/mnist.onnx")
			return b
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	t.Log("model: a softmax regression trained here (make demo writes bin/mnist.onnx)")
	set, err := mnist.LoadFirst(needDigits(t), "train", 12000)
	if err != nil {
		t.Fatal(err)
	}
	const side, classes = 28 * 28, 10
	w := make([]float32, classes*side) // [class, pixel], Gemm's B with transB
	b := make([]float32, classes)
	x := make([]float32, side)
	var z [classes]float64
	for epoch := range 3 {
		lr := 0.1 / float64(epoch+1)
		for i := range set.N {
			for j, v := range set.Image(i) {
				x[j] = float32(v) / 255
			}
			top := math.Inf(-1)
			for c := range classes {
				s := float64(b[c])
				for j, v := range x {
					s += float64(w[c*side+j] * v)
				}
				z[c] = s
				top = max(top, s)
			}
			sum := 0.0
			for c := range z {
				z[c] = math.Exp(z[c] - top)
				sum += z[c]
			}
			for c := range classes {
				g := z[c] / sum
				if c == int(set.Labels[i]) {
					g--
				}
				step := float32(lr * g)
				b[c] -= step
				for j, v := range x {
					w[c*side+j] -= step * v
				}
			}
		}
	}
	batch := onnx.Dim{Param: "batch"}
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name: "mnist-softmax",
			Nodes: []onnx.Node{
				{Name: "flatten", OpType: "Flatten", Inputs: []string{"x"}, Outputs: []string{"f"}},
				{Name: "dense", OpType: "Gemm", Inputs: []string{"f", "w", "b"}, Outputs: []string{"logits"}, Attrs: []onnx.Attribute{onnx.IntAttr("transB", 1)}},
				{Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probs"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
			},
			Inputs: []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: 1}, {Value: 28}, {Value: 28}}}},
			Outputs: []onnx.ValueInfo{{Name: "logits", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: classes}}},
				{Name: "probs", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: classes}}}},
			Initializers: []onnx.Tensor{
				{Name: "w", Dims: []int64{classes, side}, DataType: onnx.Float, Floats: w},
				{Name: "b", Dims: []int64{classes}, DataType: onnx.Float, Floats: b},
			},
		},
	})
}
