package planner

// Position orders a campaign's audience. A segment is read in one part, by
// device id; an explicit list (tokens, user ids) is read in parts of
// listPartSize entries, each part by device id. The order is a pure
// function of the campaign and the devices table, which is what makes a
// checkpointed position an exact resume point.
type Position struct {
	Part int
	ID   int64
}

// Less orders positions.
func (p Position) Less(q Position) bool {
	if p.Part != q.Part {
		return p.Part < q.Part
	}
	return p.ID < q.ID
}

// before returns the position just before p: reading "after before(p)"
// reads p again.
func (p Position) before() Position {
	return Position{Part: p.Part, ID: p.ID - 1}
}

// Device is one audience row. The byte slices point into the Page that
// holds it and are valid until the page is reused.
type Device struct {
	Part     int
	ID       int64
	UserID   []byte
	Token    []byte
	Platform []byte
	Locale   []byte
	Timezone []byte
}

func (d *Device) pos() Position { return Position{Part: d.Part, ID: d.ID} }

// Page is a run of devices in audience order. Its bytes live in one arena
// that is reused from page to page, so streaming an audience allocates
// nothing per row.
type Page struct {
	Devices []Device
	arena   []byte
}

// Reset empties the page for reuse.
func (p *Page) Reset() {
	p.Devices = p.Devices[:0]
	p.arena = p.arena[:0]
}

// Add copies a row into the page.
func (p *Page) Add(part int, id int64, userID, token, platform, locale, timezone []byte) {
	need := len(userID) + len(token) + len(platform) + len(locale) + len(timezone)
	if len(p.arena)+need > cap(p.arena) {
		// Slices already handed out keep the old arena alive; only new
		// rows go to the new one.
		p.arena = make([]byte, 0, max(2*cap(p.arena), need, 64<<10))
	}
	d := Device{Part: part, ID: id}
	d.UserID = p.copy(userID)
	d.Token = p.copy(token)
	d.Platform = p.copy(platform)
	d.Locale = p.copy(locale)
	d.Timezone = p.copy(timezone)
	p.Devices = append(p.Devices, d)
}

func (p *Page) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	start := len(p.arena)
	p.arena = append(p.arena, b...)
	return p.arena[start:len(p.arena):len(p.arena)]
}
