// Package echartsjs embeds Apache ECharts (the npm package echarts, version
// 6.1.0, file dist/echarts.min.js) so that perf's HTML reports are
// self-contained and load no script from anywhere.
//
// ECharts is licensed under the Apache License 2.0: see LICENSE and NOTICE
// in this directory; LICENSE-d3 covers the d3.js code ECharts embeds.
package echartsjs
