"""The reference receiver (`loa speaker`) for Linux boards on loudspeaker poles."""
