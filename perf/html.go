package perf

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/components"
	"github.com/go-echarts/go-echarts/v2/opts"

	"github.com/caudal-go/caudal/perf/internal/echartsjs"
)

// echartsPlaceholder stands, in the rendered page's head, for the embedded
// ECharts library until it is inlined.
const echartsPlaceholder = "<!-- caudal:echarts -->"

// htmlStyle styles the report's text and tables.
const htmlStyle = `<style>
body {font-family: system-ui, sans-serif; color: #222; margin: 0 auto; max-width: 1200px; padding: 0 16px;}
table {border-collapse: collapse; margin: 12px 0; font-size: 14px;}
th, td {border: 1px solid #ccc; padding: 4px 8px; text-align: left;}
th {background: #f3f3f3;}
td {font-variant-numeric: tabular-nums;}
</style>`

// WriteHTML writes r as a self-contained HTML page: the report of
// [WriteMarkdown], its tables as HTML tables (so the page reads without
// JavaScript), and go-echarts bar charts of the mean time and the
// allocations per iteration of every scenario by variant, plus the negative
// control's line when r has one. The ECharts library is embedded in the
// page: it loads nothing from anywhere.
func WriteHTML(w io.Writer, r *Report) (err error) {
	if r == nil {
		return errNilReport
	}
	if strings.Contains(strings.ToLower(echartsjs.JS), "</script") {
		return errors.New("perf: the embedded ECharts cannot be inlined: it contains </script")
	}
	x := newReportIndex(r)
	doc := buildReportDoc(x)
	split := len(doc)
	for i, b := range doc {
		if _, ok := b.(docCharts); ok {
			split = i
			break
		}
	}
	var before, after bytes.Buffer
	renderHTML(&before, doc[:split])
	if split < len(doc) {
		renderHTML(&after, doc[split+1:])
	}

	page := components.NewPage()
	page.SetPageTitle("ExecutorCore Performance Validation — " + r.Suite + " suite")
	page.SetLayout(components.PageCenterLayout)
	page.AddCharts(meanChart(x), allocsChart(x))
	if len(r.NegativeControl) > 0 {
		page.AddCharts(controlChart(r))
	}
	// No asset is loaded from a host: the library goes inline instead.
	page.ClearPresetAssets()
	page.AddCustomizedHeaders(htmlStyle, echartsPlaceholder)

	var buf bytes.Buffer
	func() {
		defer func() { // go-echarts panics on a template error
			if p := recover(); p != nil {
				err = fmt.Errorf("perf: rendering HTML: %v", p)
			}
		}()
		err = page.Render(&buf)
	}()
	if err != nil {
		return err
	}
	out := buf.String()
	// Insert the report around the charts first: the library itself
	// contains "</body>".
	open := strings.Index(out, "<body>")
	end := strings.LastIndex(out, "</body>")
	if open < 0 || end < open || strings.Count(out, echartsPlaceholder) != 1 {
		return errors.New("perf: rendering HTML: unexpected go-echarts page layout")
	}
	open += len("<body>")
	out = out[:open] + "\n<div class=\"report\">\n" + before.String() + "</div>\n" + out[open:end] +
		"<div class=\"report\">\n" + after.String() + "</div>\n" + out[end:]
	out = strings.Replace(out, echartsPlaceholder,
		"<script type=\"text/javascript\">\n"+echartsjs.JS+"\n</script>", 1)
	_, err = io.WriteString(w, out)
	return err
}

// chartInit sizes a chart and gives it a fixed ID, so the page is
// deterministic.
func chartInit(id string) charts.GlobalOpts {
	return charts.WithInitializationOpts(opts.Initialization{ChartID: id, Width: "1000px", Height: "480px"})
}

// chartCommon are the options every chart shares.
func chartCommon(id, title string) []charts.GlobalOpts {
	return []charts.GlobalOpts{
		chartInit(id),
		charts.WithTitleOpts(opts.Title{Title: title}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Bottom: "0"}),
		charts.WithAnimation(false),
	}
}

// scenarioAxis returns the scenarios' IDs: short enough to label every
// bar.
func scenarioAxis(x *reportIndex) []string {
	ids := make([]string, len(x.scenarios))
	for i, s := range x.scenarios {
		ids[i] = s.ID
	}
	return ids
}

// barByScenario makes a bar chart of one figure per scenario and variant;
// a missing result is a gap.
func barByScenario(x *reportIndex, id, title, yName, yType string, figure func(*Result) float64) *charts.Bar {
	bar := charts.NewBar()
	bar.SetGlobalOptions(append(chartCommon(id, title),
		charts.WithYAxisOpts(opts.YAxis{Name: yName, Type: yType}),
		charts.WithXAxisOpts(opts.XAxis{Name: "scenario", AxisLabel: &opts.AxisLabel{Interval: "0"}}),
	)...)
	bar.SetXAxis(scenarioAxis(x))
	for _, v := range x.variants() {
		data := make([]opts.BarData, len(x.scenarios))
		for i, s := range x.scenarios {
			data[i] = opts.BarData{Value: "-"}
			if res := x.result(s.ID, v); res != nil {
				data[i] = opts.BarData{Value: round3(figure(res))}
			}
		}
		bar.AddSeries(v, data)
	}
	return bar
}

// meanChart is the mean time per iteration by scenario and variant.
func meanChart(x *reportIndex) *charts.Bar {
	return barByScenario(x, "mean_per_scenario", "Mean time per iteration (µs, log scale)", "µs", "log",
		func(res *Result) float64 { return res.Stats.MeanNS / 1e3 })
}

// allocsChart is the allocations per iteration by scenario and variant.
func allocsChart(x *reportIndex) *charts.Bar {
	return barByScenario(x, "allocs_per_scenario", "Allocations per iteration", "allocs/op", "value",
		func(res *Result) float64 { return res.Stats.AllocsPerOp })
}

// controlChart is the negative control's cost per execute by history size.
func controlChart(r *Report) *charts.Line {
	pts := sortedControl(r.NegativeControl)
	line := charts.NewLine()
	line.SetGlobalOptions(append(chartCommon("negative_control", "Negative control: time per execute as the history grows (µs)"),
		charts.WithXAxisOpts(opts.XAxis{Name: "history"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "µs", Type: "value"}),
	)...)
	hist := make([]string, len(pts))
	naive := make([]opts.LineData, len(pts))
	base := make([]opts.LineData, len(pts))
	for i, p := range pts {
		hist[i] = groupInt(int64(p.History))
		naive[i] = opts.LineData{Value: round3(p.MeanNSPerExec / 1e3)}
		base[i] = opts.LineData{Value: round3(p.BaselineNSPerEx / 1e3)}
	}
	line.SetXAxis(hist)
	line.AddSeries(VariantNaive, naive)
	line.AddSeries(VariantBaseline, base)
	return line
}

// renderHTML writes blocks as HTML.
func renderHTML(buf *bytes.Buffer, blocks []any) {
	for _, b := range blocks {
		switch b := b.(type) {
		case docHeading:
			fmt.Fprintf(buf, "<h%d>%s</h%d>\n", b.level, html.EscapeString(b.text), b.level)
		case docPara:
			buf.WriteString("<p>" + inlineHTML(b.text) + "</p>\n")
		case docList:
			buf.WriteString("<ul>\n")
			for _, it := range b.items {
				buf.WriteString("<li>" + inlineHTML(it) + "</li>\n")
			}
			buf.WriteString("</ul>\n")
		case docTable:
			buf.WriteString("<table>\n<thead><tr>")
			for _, h := range b.header {
				buf.WriteString("<th>" + html.EscapeString(h) + "</th>")
			}
			buf.WriteString("</tr></thead>\n<tbody>\n")
			for _, row := range b.rows {
				buf.WriteString("<tr>")
				for _, c := range row {
					buf.WriteString("<td>" + html.EscapeString(c) + "</td>")
				}
				buf.WriteString("</tr>\n")
			}
			buf.WriteString("</tbody>\n</table>\n")
		}
	}
}

// inlineHTML escapes text and turns **bold** into <strong>.
func inlineHTML(text string) string {
	parts := strings.Split(html.EscapeString(text), "**")
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			b.WriteString("<strong>" + p + "</strong>")
			continue
		}
		if i%2 == 1 {
			b.WriteString("**")
		}
		b.WriteString(p)
	}
	return b.String()
}
