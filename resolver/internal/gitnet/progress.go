package gitnet

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressDelay is how long a fetch runs before progress is shown: a
// quick fetch draws nothing.
const progressDelay = time.Second

// startProgress redraws "poison: fetching LABEL: 12.3 MiB (1.2 MiB/s)" on
// out every quarter second once the fetch has run for progressDelay, and
// erases it when the returned function is called. out nil draws nothing.
func startProgress(out io.Writer, label string, w *watch) func() {
	if out == nil {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	drawn := false
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				el := now.Sub(start)
				if el < progressDelay {
					continue
				}
				n := w.received.Load()
				fmt.Fprintf(out, "\r\033[Kpoison: fetching %s: %s (%s/s)", label, human(n), human(int64(float64(n)/el.Seconds())))
				drawn = true
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		if drawn {
			fmt.Fprint(out, "\r\033[K")
		}
	}
}

// human formats a byte count.
func human(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
