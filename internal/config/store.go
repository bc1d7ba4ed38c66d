package config

// Reader is read access to one consistent set of objects. Implementations
// returned by a store's Snapshot are immutable: callers must not modify the
// objects they get.
type Reader interface {
	// List returns every object of kind (the schema Kind, e.g.
	// "VirtualService") in all namespaces, sorted by namespace then name.
	List(kind string) []*Object
	// Get returns one object.
	Get(key Key) (*Object, bool)
	// Revision increases with every change to the set.
	Revision() int64
}

// ApplyResult is the outcome of applying or deleting one object, printed
// kubectl-style as "<Resource>/<Name> <Action>".
type ApplyResult struct {
	Resource  string `json:"resource"` // e.g. "virtualservice.networking.istio.io"
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Action    string `json:"action"` // created | configured | unchanged | deleted
}

func (r ApplyResult) String() string { return r.Resource + "/" + r.Name + " " + r.Action }
