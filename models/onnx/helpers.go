package onnx

// IntAttr is an INT attribute.
func IntAttr(name string, v int64) Attribute {
	return Attribute{Name: name, Type: AttrInt, I: v}
}

// IntsAttr is an INTS attribute.
func IntsAttr(name string, v ...int64) Attribute {
	return Attribute{Name: name, Type: AttrInts, Ints: v}
}

// FloatAttr is a FLOAT attribute.
func FloatAttr(name string, v float32) Attribute {
	return Attribute{Name: name, Type: AttrFloat, F: v}
}

// StringAttr is a STRING attribute.
func StringAttr(name, v string) Attribute {
	return Attribute{Name: name, Type: AttrString, S: v}
}

// Sym returns symbolic dimensions with the given names.
func Sym(names ...string) []Dim {
	dims := make([]Dim, len(names))
	for i, n := range names {
		dims[i] = Dim{Param: n}
	}
	return dims
}
