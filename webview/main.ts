// Browser side of the panels (filled in by the extension work).
export {};
