package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ProcessHeader is the header of ProcessReport.Row's Markdown table.
const ProcessHeader = "| N | farms x edges | writes, c | changes / row | deliveries / change (fleet) | / change / receiving node | applied / ignored / held / refused | settle | writes/s at origin | single node writes/s | ratio | fleet CPU-s (writes to quiet) | idle links | idle B/s per link | idle B/s fleet | idle fleet CPU-s/s |\n" +
	"| ---: | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"

// Row is the report as one row of the ProcessHeader table.
func (r *ProcessReport) Row() string {
	cpu := func(v float64) string {
		if !r.CPUMeasured {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", v)
	}
	idle := func(s string) string {
		if r.IdleTime == 0 {
			return "-"
		}
		return s
	}
	return fmt.Sprintf("| %d | %d x %d | %d, c=%d | %.2f | %.1f | %.2f | %d / %d / %d / %d | %s | %.0f | %.0f | %.2f | %s | %s | %s | %s | %s |\n",
		r.Nodes, r.Farms, r.Edges, r.Writes, r.Concurrency, r.ChangesPerRow, r.DeliveriesPerChange, r.DeliveriesPerChangePerNode,
		r.Applied, r.Ignored, r.Held, r.Refused, fmtMS(r.Settle), r.WriteRate, r.ReferenceRate, r.WriteRatio, cpu(r.ActiveCPU),
		idle(fmt.Sprint(r.IdleLinks)), idle(fmt.Sprintf("%.0f", r.IdleBytesPerLink)), idle(fmt.Sprintf("%.0f", r.IdleBytesPerSec)), idle(cpu(r.IdleCPUPerSec)))
}

// WriteMarkdown prints the summary row and a table per node.
func (r *ProcessReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString(ProcessHeader)
	b.WriteString(r.Row())
	fmt.Fprintf(&b, "\nOrigin %s; slowest to settle %s; protocol %d; %d rows written with %d errors in %s.\n\n",
		r.Origin, r.Slowest, r.ProtocolVersion, r.Writes, r.WriteErrors, r.WriteElapsed.Round(time.Millisecond))
	b.WriteString("| node | role | farm | applied | ignored | held | refused | deliveries / change | settled | idle links | idle B/s in | idle B/s out | idle CPU-s/s |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, n := range r.PerNode {
		per := 0.0
		if r.ChangesWritten > 0 {
			per = float64(n.Applied+n.Ignored+n.Held+n.Refused) / float64(r.ChangesWritten)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | %.2f | %s | %d | %.0f | %.0f | %.3f |\n", n.Name, n.Role, n.Farm,
			n.Applied, n.Ignored, n.Held, n.Refused, per, fmtMS(n.Settled), n.IdleLinks, n.IdleBytesInPerSec, n.IdleBytesOutPerSec, n.IdleCPU)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
