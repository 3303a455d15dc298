module github.com/accelnode/accelnode

go 1.26.8

require (
	github.com/ebitengine/purego v0.11.3
	github.com/tetratelabs/wazero v1.12.0
	github.com/yalue/onnxruntime_go v1.27.0
	google.golang.org/protobuf v1.36.12
)

require golang.org/x/sys v0.44.0
