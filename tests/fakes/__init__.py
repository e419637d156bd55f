"""In-process and standalone fakes of ticket systems, served over real HTTP on loopback."""
