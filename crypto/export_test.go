package crypto

// KeyOf returns the shared key of a live session, so that a test can watch
// it being wiped after the session ends.
func (s *Sessions) KeyOf(id string) *[32]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.m[id]; ss != nil {
		return &ss.key
	}
	return nil
}
