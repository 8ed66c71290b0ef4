package echartsjs

import _ "embed" // for go:embed

// Version is the version of the embedded ECharts.
const Version = "6.1.0"

// JS is the minified ECharts library (dist/echarts.min.js).
//
//go:embed echarts.min.js
var JS string
