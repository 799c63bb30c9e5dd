package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/detect/webhook"
)

// TestDoneWhenConsumerDies closes the stage's consumer under it (as a
// lost dependency would): Done reports it instead of the stage idling
// while looking alive, and Stop still returns.
func TestDoneWhenConsumerDies(t *testing.T) {
	g := newHookRig(t, webhook.DefaultConfiguration())
	c, _ := g.start()
	select {
	case err := <-c.Done():
		t.Fatalf("Done fired before any fault: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	c.client.Close()
	select {
	case err := <-c.Done():
		if !strings.Contains(err.Error(), "consumer closed") {
			t.Errorf("Done error %q, want the closed consumer named", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Done did not fire within 10 s of the consumer closing")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("Stop after the fault: %v", err)
	}
}

// TestDoneWhenLoopPanics: a panic in the detection loop is a fatal error
// naming the loop, not a silent dead goroutine.
func TestDoneWhenLoopPanics(t *testing.T) {
	g := newHookRig(t, webhook.DefaultConfiguration())
	c, _ := g.start()
	defer c.Stop()
	func() {
		defer c.guard("detection loop")
		panic("boom")
	}()
	select {
	case err := <-c.Done():
		if !strings.Contains(err.Error(), "detection loop panicked: boom") {
			t.Errorf("Done error %q", err)
		}
	case <-time.After(time.Second):
		t.Fatal("no fatal error after a panic")
	}
}
