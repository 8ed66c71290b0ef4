// Package echartsjs embeds Apache ECharts (the npm package echarts, version
// 6.1.0, file dist/echarts.min.js) so that perf's HTML reports are
// self-contained and load no script from anywhere.
//
// ECharts is licensed under the Apache License 2.0: see LICENSE and NOTICE
// in this directory; LICENSE-d3 covers the d3.js code ECharts embeds.
package echartsjs

import _ "embed" // for go:embed

// Version is the version of the embedded ECharts.
const Version = "6.1.0"

// JS is the minified ECharts library (dist/echarts.min.js).
//
//go:embed echarts.min.js
var JS string
