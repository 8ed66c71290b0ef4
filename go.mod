module github.com/caudal-go/caudal

go 1.26.0

require (
	github.com/HdrHistogram/hdrhistogram-go v1.1.2
	github.com/go-echarts/go-echarts/v2 v2.6.7
	go.uber.org/goleak v1.3.0
)

require (
	github.com/google/go-cmp v0.6.0 // indirect
	golang.org/x/exp v0.0.0-20260824195058-e88cd73687aa // indirect
	gonum.org/v1/gonum v0.11.0 // indirect
)
