package node

import "context"

// ActorState is the encoded state of owner's actor id as its next call
// would find it: its memory, globals and tensors. An evicted actor is
// restored first.
func ActorState(n *Node, owner, id string) ([]byte, error) {
	a, err := n.lookup(owner, id)
	if err != nil {
		return nil, err
	}
	if err := a.enter(context.Background()); err != nil {
		return nil, err
	}
	defer a.leave()
	if err := a.load(context.Background()); err != nil {
		return nil, err
	}
	st, err := a.live.Save()
	if err != nil {
		return nil, err
	}
	return st.MarshalBinary()
}

// HoldActor takes owner's actor id's turn, as a long call would, until
// the returned function is called.
func HoldActor(n *Node, owner, id string) (func(), error) {
	a, err := n.lookup(owner, id)
	if err != nil {
		return nil, err
	}
	if err := a.q.lock(context.Background(), 0); err != nil {
		return nil, err
	}
	return a.q.unlock, nil
}

// ActorWaiting is the number of calls waiting for owner's actor id.
func ActorWaiting(n *Node, owner, id string) int {
	a, err := n.lookup(owner, id)
	if err != nil {
		return -1
	}
	return a.q.waiting()
}

// OpenSnapshot opens a sealed snapshot as a restore does.
func OpenSnapshot(n *Node, sealed []byte) error {
	_, _, err := n.openState(sealed)
	return err
}
