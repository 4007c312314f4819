"""Deterministic generator of realistic, course-shaped product items (and their pickle).

The reference data set is the ~400,000 curated Amazon items of Ed Donner's "LLM Engineering"
course (week 6, "The Price is Right"): a pickled ``list`` of ``items.Item`` objects whose attribute
dict holds ``title``, ``price``, ``details``, ``prompt``, ``token_count``, ``include`` and
``category``, with::

    prompt = QUESTION + "\\n\\n" + text + "\\n\\n" + PREFIX + str(round(price)) + ".00"

where ``text`` is the (scrubbed) title, a newline, then a scrubbed blob of description, features and
details cut to ~160 tokens. This module fabricates items of the same shape so that the pipeline can be
developed and benchmarked without the real data:

* :func:`generate_items` yields plain dicts. Item ``i`` depends only on ``(seed, i)``, never on ``n``,
  so every prefix of a large sample is the corresponding small sample.
* :func:`write_pickle` writes them as a protocol-4 pickle that references the global ``items.Item``
  (which is *not* importable, exactly like the course pickles), streaming and atomically. The bytes are
  those ``pickle.dumps(list_of_items, protocol=4)`` would produce with CPython's C pickler if an
  ``items.Item`` class existed -- except that the list is always filled with ``MARK ... APPENDS``
  batches (the C pickler uses a lone ``APPEND`` for a one-element list).
* ``python -m ftprep.sample --n 600 --seed 42 --out data/sample/items.pkl`` is the command line.

``token_count`` is an *estimate* (``round(len(prompt) / 4)``, about four characters per token); the
course stores the exact Llama tokenizer count of the prompt, which would need a tokenizer here.
``include`` is always ``True`` (the curated course pickles only hold included items).

About 3% of the items are deliberately "tricky" for JSON/CSV escaping: their prompt, title or details
carry non-ASCII characters (é, ü, ™, °, ½, µ, ×), straight and curly quotes, inch marks (``12"``),
backslashes and a literal ``$`` (e.g. "Includes a $10 mail-in rebate card"), and their ``details`` is
pretty-printed JSON with real newlines in it. A few brands (e.g. "Pokémon") are non-ASCII as well.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import pickle
import re
import secrets
import struct
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from random import Random
from typing import Any, BinaryIO

__all__ = [
    "CATEGORIES",
    "FIELDS",
    "MAX_PRICE",
    "MIN_PRICE",
    "PREFIX",
    "QUESTION",
    "Item",
    "generate_items",
    "make_prompt",
    "write_pickle",
]

QUESTION = "How much does this cost to the nearest dollar?"
PREFIX = "Price is $"
MIN_PRICE = 0.5
MAX_PRICE = 999.49

#: Attribute order of the course's ``Item.__dict__`` (``category`` is set last, by the loader).
FIELDS = ("title", "price", "details", "prompt", "token_count", "include", "category")

#: Share of items that carry characters that are awkward to escape.
TRICKY_RATE = 0.03


def make_prompt(text: str, price: float) -> str:
    """The course's prompt: question, text, and the price rounded with plain ``round()`` (banker's)."""
    return f"{QUESTION}\n\n{text}\n\n{PREFIX}{str(round(price))}.00"


class Item:
    """Attribute holder shaped like the course's ``items.Item`` (state = the attribute dict).

    :func:`write_pickle` does not pickle instances of this class through :mod:`pickle`: it writes the
    opcodes itself and names the class ``items.Item``. The class is here for callers that want objects
    rather than dicts (``Item(**d)``).
    """

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __repr__(self) -> str:
        return f"<Item {getattr(self, 'title', '?')!r} ${getattr(self, 'price', float('nan')):.2f}>"


# ---------------------------------------------------------------------------------------------------
# Vocabulary. A product type is (noun, median price, log-sigma, weight in pounds, title qualifiers,
# type-specific feature sentences).
# ---------------------------------------------------------------------------------------------------

_T = tuple[str, float, float, float, tuple[str, ...], tuple[str, ...]]

_AUTOMOTIVE: tuple[_T, ...] = (
    ("Fuel Pump Module", 120, 0.45, 4.5, ("Assembly", "with Sending Unit"), (
        "Delivers consistent fuel pressure and flow for easy starts and smooth acceleration.",
        "Includes fuel level sending unit, strainer and lock ring seal.",
    )),
    ("Oxygen Sensor", 45, 0.4, 0.4, ("Upstream", "Downstream", "Heated"), (
        "Heated design reaches operating temperature quickly to reduce cold-start emissions.",
        "Pre-coated threads with anti-seize compound for easy installation.",
    )),
    ("Ceramic Brake Pad Set", 40, 0.4, 3.0, ("Front", "Rear"), (
        "Low-dust ceramic formula keeps wheels clean and stops quietly.",
        "Includes stainless steel abutment clips and synthetic brake lubricant.",
    )),
    ("Disc Brake Rotor", 55, 0.45, 14.0, ("Front", "Rear", "Drilled and Slotted"), (
        "Precision-balanced to eliminate vibration and pedal pulsation.",
        "E-coated finish protects against rust on hub, vanes and edges.",
    )),
    ("Shock Absorber", 55, 0.4, 5.0, ("Front", "Rear", "Gas Charged"), (
        "Monotube gas-charged design improves handling and reduces body roll.",
    )),
    ("Complete Strut Assembly", 110, 0.4, 16.0, ("Front Left", "Front Right", "Rear"), (
        "Ready-to-install assembly includes spring, mount, bearing and boot.",
        "No spring compressor needed: saves hours of labor.",
    )),
    ("Iridium Spark Plug", 9, 0.4, 0.2, ("Pack of 4", "Pack of 8", "Laser Iridium"), (
        "Fine-wire iridium center electrode delivers a stronger, more focused spark.",
        "Pre-gapped from the factory; verify gap before installation.",
    )),
    ("Ignition Coil", 45, 0.45, 1.2, ("Pack of 1", "Set of 4", "Set of 6"), (
        "High-output coil provides a hot, consistent spark for improved combustion.",
    )),
    ("Engine Water Pump", 70, 0.45, 5.5, ("with Gasket", "Kit"), (
        "Cast impeller and premium seal deliver leak-free coolant circulation.",
    )),
    ("Serpentine Belt", 25, 0.35, 0.6, ("6-Rib", "EPDM"), (
        "EPDM construction resists cracking, glazing and noise for long belt life.",
    )),
    ("Radiator", 150, 0.4, 18.0, ("Aluminum Core", "with Transmission Cooler"), (
        "Brazed aluminum core with plastic tanks for maximum heat transfer.",
        "Pressure tested for leaks before it leaves the factory.",
    )),
    ("Remanufactured Alternator", 170, 0.4, 14.0, ("130 Amp", "160 Amp"), (
        "Every unit is tested for voltage output, amperage and noise under load.",
    )),
    ("Starter Motor", 140, 0.4, 10.0, ("Gear Reduction", "Remanufactured"), (
        "Gear-reduction design cranks the engine quickly even in cold weather.",
    )),
    ("Headlight Assembly", 120, 0.5, 9.0, ("Driver Side", "Passenger Side", "Pair"), (
        "DOT and SAE compliant; projector lens delivers a sharp cut-off line.",
        "Plug-and-play wiring connects directly to the factory harness.",
    )),
    ("Tail Light Assembly", 85, 0.5, 4.0, ("Driver Side", "Passenger Side", "LED"), (
        "Bright LED light bar improves visibility to drivers behind you.",
    )),
    ("All-Weather Floor Mats", 80, 0.5, 10.0, ("Front and Rear", "Black", "Custom Fit"), (
        "Laser-measured for a precise fit that covers the floor, sides and rear.",
        "Raised channels trap water, mud and snow to protect the carpet.",
    )),
    ("Waterproof Car Cover", 65, 0.5, 7.0, ("Outdoor", "Full Size"), (
        "Multi-layer fabric blocks UV rays, rain, snow and bird droppings.",
    )),
    ("Wiper Blade", 16, 0.4, 0.6, ('Beam', "Pack of 2", "All-Season"), (
        "Curved beam design applies uniform pressure for a clean, streak-free wipe.",
    )),
    ("Cabin Air Filter", 13, 0.4, 0.5, ("with Activated Carbon", "Pack of 2"), (
        "Activated carbon layer traps odors, pollen, dust and exhaust gases.",
    )),
    ("Oil Filter", 8, 0.4, 0.8, ("Extended Life", "Pack of 6"), (
        "Synthetic blend media holds more dirt and lasts up to 10,000 miles.",
    )),
    ("Class III Trailer Hitch", 180, 0.35, 45.0, ("2-Inch Receiver",), (
        "Rated for 6,000 lbs gross trailer weight and 600 lbs tongue weight.",
        "Black powder coat finish over an e-coat base resists rust and chips.",
    )),
    ("Roof Rack Cross Bars", 210, 0.4, 12.0, ("Aluminum", "Lockable"), (
        "Aerodynamic profile reduces wind noise and drag at highway speeds.",
    )),
    ("Car Wax", 18, 0.4, 1.2, ("16 oz", "Paste", "Liquid"), (
        "Hydrophobic polymer formula beads water and protects the paint for months.",
    )),
    ("Hard Tri-Fold Tonneau Cover", 450, 0.35, 50.0, ("5.5 ft Bed", "6.5 ft Bed"), (
        "Installs in minutes with no drilling using included clamps.",
    )),
    ("Catalytic Converter", 280, 0.5, 15.0, ("Direct Fit", "EPA Compliant"), (
        "Stainless steel body with a high-flow ceramic substrate.",
    )),
    ("Power Window Regulator", 55, 0.4, 4.5, ("with Motor", "Front Left", "Front Right"), (
        "Heavy-duty cables and pulleys restore smooth window operation.",
    )),
    ("Wheel Hub Bearing Assembly", 75, 0.4, 7.5, ("Front", "Rear", "with ABS Sensor"), (
        "Pre-greased, sealed bearing eliminates the need for repacking.",
    )),
    ("Valve Cover Gasket Set", 30, 0.45, 1.0, ("with Grommets",), (
        "Molded rubber gaskets conform to surface imperfections for a leak-proof seal.",
    )),
    ("Mass Air Flow Sensor", 85, 0.45, 0.8, ("with Housing",), (
        "Restores proper air-fuel ratio, idle quality and fuel economy.",
    )),
    ("Door Handle", 18, 0.4, 0.6, ("Exterior", "Interior", "Chrome"), ()),
    ("Tire Valve Stem Caps", 4, 0.5, 0.05, ("4-Pack", "Chrome", "Aluminum"), ()),
    ("Miniature Light Bulb", 5, 0.5, 0.05, ("194", "2-Pack", "LED"), ()),
)

_TOOLS: tuple[_T, ...] = (
    ("Cordless Drill/Driver Kit", 130, 0.45, 4.5, ("20V MAX", "1/2-Inch", "Brushless"), (
        "Two-speed transmission (0-450 / 0-1,500 RPM) for a range of fastening and drilling tasks.",
        "Kit includes two batteries, charger and a contractor bag.",
    )),
    ("Impact Driver", 120, 0.45, 3.2, ("1/4-Inch Hex", "Brushless", "Tool Only"), (
        "Delivers up to 1,825 in-lbs of torque for driving long fasteners.",
    )),
    ("Circular Saw", 110, 0.45, 8.5, ("7-1/4-Inch", "15 Amp"), (
        "Electric brake stops the blade quickly after the trigger is released.",
        "Bevels up to 57 degrees with positive stops at 45 degrees.",
    )),
    ("Oscillating Multi-Tool", 85, 0.45, 2.8, ("Corded", "Quick-Change"), (
        "Tool-free accessory change for fast transitions between cuts.",
    )),
    ("Jigsaw", 80, 0.45, 5.0, ("Variable Speed", "Orbital"), (
        "Four orbital settings for fast, aggressive cuts or smooth scrolling.",
    )),
    ("Random Orbit Sander", 65, 0.4, 3.0, ("5-Inch", "Variable Speed"), (
        "Dust-sealed switch and dust collection bag keep the work area clean.",
    )),
    ("Tape Measure", 15, 0.45, 1.0, ("25 ft", "35 ft", "Magnetic Hook"), (
        "Blade stands out to 13 feet for single-person measuring.",
    )),
    ("Adjustable Wrench", 18, 0.4, 1.2, ("10-Inch", "8-Inch", "Wide Jaw"), (
        "Precision-machined worm gear for smooth jaw adjustment.",
    )),
    ("Mechanics Tool Set", 75, 0.55, 12.0, ("123-Piece", "205-Piece", "SAE and Metric"), (
        "72-tooth ratchets need only 5 degrees of swing in tight spaces.",
        "Blow-molded case keeps every socket organized and easy to find.",
    )),
    ("Screwdriver Set", 25, 0.45, 2.0, ("10-Piece", "Insulated", "Precision"), (
        "Cushion-grip handles maximize torque and reduce hand fatigue.",
    )),
    ("Pliers Set", 35, 0.45, 2.5, ("3-Piece", "5-Piece"), (
        "Induction-hardened cutting edges stay sharp through copper and steel wire.",
    )),
    ("Claw Hammer", 25, 0.4, 1.8, ("16 oz", "20 oz", "Fiberglass Handle"), (
        "Forged in one piece for maximum durability and balance.",
    )),
    ("Utility Knife", 12, 0.4, 0.4, ("Folding", "Retractable", "with 10 Blades"), ()),
    ("Stud Finder", 30, 0.4, 0.5, ("Electronic", "with AC Detection"), (
        "Locates the center and edges of studs through drywall up to 1-1/2 inches thick.",
    )),
    ("Self-Leveling Cross Line Laser", 85, 0.5, 1.5, ("Green Beam", "100 ft"), (
        "Self-levels within 4 degrees and flashes when out of level.",
    )),
    ("Interior Knob", 28, 0.35, 1.5, ("Passage", "Privacy", "Satin Nickel", "Aged Bronze"), (
        "Fits standard door preparations with 2-3/8 or 2-3/4 inch backset.",
        "Reversible for left- or right-handed doors.",
    )),
    ("Single Cylinder Deadbolt", 35, 0.35, 2.0, ("Satin Nickel", "Matte Black", "Keyed Alike"), (
        "ANSI/BHMA Grade 1 certified for the highest residential security.",
    )),
    ("Pull-Down Kitchen Faucet", 150, 0.5, 7.0, ("Single Handle", "Spot Resist Stainless"), (
        "Magnetic docking keeps the spray head securely in place.",
        "Ceramic disc valve provides drip-free performance for life.",
    )),
    ("Multi-Function Showerhead", 45, 0.5, 1.3, ("5-Spray", "Chrome", "1.8 GPM"), (
        "Rub-clean nozzles make removing mineral build-up easy.",
    )),
    ("LED Light Bulb", 18, 0.5, 1.0, ("A19", "60W Equivalent", "Daylight", "Pack of 8"), (
        "Uses 85% less energy and lasts up to 13.7 years at 3 hours per day.",
    )),
    ("Dimmer Switch", 24, 0.4, 0.3, ("Single-Pole", "3-Way", "for LED Bulbs"), (
        "Compatible with dimmable LED, CFL, halogen and incandescent bulbs.",
    )),
    ("GFCI Outlet", 20, 0.35, 0.4, ("15 Amp", "Tamper-Resistant", "White"), (
        "Self-test feature automatically checks ground-fault protection.",
    )),
    ("Programmable Smart Thermostat", 140, 0.35, 0.9, ("Wi-Fi", "with Sensor"), (
        "Learns your schedule and adjusts the temperature to save energy.",
    )),
    ("Aluminum Extension Ladder", 230, 0.35, 32.0, ("24 ft", "Type II", "225 lb Capacity"), (
        "Slip-resistant D-rungs and swivel safety shoes for secure footing.",
    )),
    ("Rechargeable LED Work Light", 45, 0.5, 2.2, ("2000 Lumen", "Magnetic Base"), ()),
    ("Wet/Dry Shop Vacuum", 105, 0.45, 15.0, ("6 Gallon", "4.5 Peak HP"), (
        "Converts to a blower for clearing leaves and debris.",
    )),
    ("Caulking Gun", 12, 0.4, 1.0, ("Dripless", "10 oz"), ()),
    ("Plastic Wall Anchors", 5, 0.5, 0.2, ("Pack of 20", "with Screws"), ()),
    ("Wet Tile Saw", 330, 0.4, 40.0, ("7-Inch", "with Stand"), (
        "Cuts tiles up to 24 inches long on a sliding table.",
    )),
    ("Portable Air Compressor", 170, 0.5, 30.0, ("6 Gallon", "150 PSI", "Oil-Free"), (
        "Quiet pump design runs at 68 decibels.",
    )),
    ("Electric Pressure Washer", 230, 0.4, 35.0, ("2000 PSI", "1.2 GPM"), (
        "Includes 0, 15, 25 and 40-degree quick-connect nozzles.",
    )),
)

_ELECTRONICS: tuple[_T, ...] = (
    ("Portable Bluetooth Speaker", 60, 0.6, 1.5, ("Waterproof", "IPX7", "Black"), (
        "Delivers rich, room-filling sound with deep bass and clear highs.",
        "Up to 20 hours of playtime on a single charge.",
    )),
    ("Noise Cancelling Over-Ear Headphones", 110, 0.7, 0.6, ("Wireless", "Black", "Silver"), (
        "Active noise cancellation blocks out engine rumble and office chatter.",
        "Soft memory foam ear cushions for all-day comfort.",
    )),
    ("True Wireless Earbuds", 50, 0.7, 0.2, ("Bluetooth 5.3", "with Charging Case"), (
        "Touch controls let you play, pause and take calls without your phone.",
    )),
    ("Soundbar", 200, 0.55, 8.0, ("2.1 Channel", "with Wireless Subwoofer", "Dolby Atmos"), (
        "Connects to your TV with a single HDMI eARC cable.",
    )),
    ("Dual Band Wi-Fi Router", 100, 0.55, 1.5, ("AC1750", "AX3000", "Wi-Fi 6"), (
        "Covers up to 2,500 square feet and connects more than 40 devices.",
        "Four gigabit Ethernet ports for wired gaming consoles and PCs.",
    )),
    ("Portable External Hard Drive", 80, 0.5, 0.5, ("2TB", "4TB", "USB 3.0"), (
        "Drag-and-drop file saving with automatic backup software included.",
    )),
    ("microSDXC Memory Card", 16, 0.6, 0.05, ("128GB", "256GB", "with Adapter", "U3 A2"), (
        "Read speeds up to 160 MB/s for fast transfers of 4K video.",
    )),
    ("USB Flash Drive", 12, 0.5, 0.05, ("64GB", "128GB", "USB 3.1"), ()),
    ("High Speed HDMI Cable", 10, 0.45, 0.4, ("6 ft", "10 ft", "4K 60Hz", "2-Pack"), (
        "Supports 4K at 60Hz, HDR, ARC and 18 Gbps bandwidth.",
    )),
    ("Wireless Mouse", 25, 0.5, 0.25, ("2.4 GHz", "Silent Click", "Ergonomic"), (
        "Plug-and-play USB receiver with no drivers required.",
    )),
    ("Mechanical Gaming Keyboard", 80, 0.5, 2.4, ("RGB Backlit", "Tenkeyless", "Hot-Swappable"), (
        "Tactile switches rated for 50 million keystrokes.",
    )),
    ("1080p HD Webcam", 55, 0.5, 0.4, ("with Microphone", "Auto Focus"), (
        "Dual stereo microphones capture natural sound on video calls.",
    )),
    ("4K Streaming Media Player", 45, 0.4, 0.3, ("with Voice Remote", "HDR"), (
        "Stream from thousands of free and paid channels.",
    )),
    ("7.2-Channel AV Receiver", 450, 0.4, 22.0, ("8K", "Dolby Atmos", "Bluetooth"), (
        "Room calibration optimizes sound for the size and shape of your room.",
    )),
    ("Bookshelf Speakers", 180, 0.55, 14.0, ("Pair", "Powered", "Walnut"), (
        "Silk dome tweeters and woven woofers deliver detailed, natural sound.",
    )),
    ("Dash Cam", 80, 0.5, 0.4, ("Front and Rear", "1440p", "Night Vision"), (
        "Loop recording overwrites the oldest footage when the card is full.",
    )),
    ("Wireless Security Camera", 60, 0.55, 0.8, ("Outdoor", "2K", "Color Night Vision"), (
        "Motion alerts are sent to your phone with a snapshot of the activity.",
    )),
    ("Camera Lens", 420, 0.6, 1.4, ("50mm f/1.8", "18-55mm", "Telephoto Zoom"), (
        "Stepping motor delivers smooth, quiet autofocus for video.",
    )),
    ("Aluminum Camera Tripod", 40, 0.55, 3.0, ("60-Inch", "with Phone Mount"), ()),
    ("Surge Protector Power Strip", 25, 0.45, 1.3, ("12 Outlets", "4320 Joules", "6 ft Cord"), (
        "USB ports deliver up to 2.4A to charge phones and tablets.",
    )),
    ("Portable Power Bank", 35, 0.45, 0.7, ("20000mAh", "USB-C PD"), ()),
    ("IPS Computer Monitor", 210, 0.45, 11.0, ("27-Inch", "QHD 1440p", "165Hz"), (
        "Three-sided borderless design is ideal for multi-monitor setups.",
    )),
    ("Home Theater Projector", 340, 0.5, 7.5, ("Native 1080p", "8000 Lumens"), (
        "Projects an image up to 300 inches with keystone correction.",
    )),
    ("Double DIN Car Stereo Receiver", 160, 0.55, 4.0, ("Apple CarPlay", "Android Auto"), (
        "6.8-inch capacitive touchscreen with a backup camera input.",
    )),
    ("Powered Subwoofer", 250, 0.5, 30.0, ("10-Inch", "12-Inch", "300 Watts"), ()),
    ("Belt-Drive Turntable", 200, 0.5, 12.0, ("Bluetooth", "with Built-in Preamp"), (
        "Die-cast aluminum platter minimizes vibration and speed fluctuation.",
    )),
    ("Portable SSD", 110, 0.5, 0.15, ("1TB", "2TB", "USB-C"), ()),
    ("Gigabit Ethernet Switch", 35, 0.55, 0.7, ("8-Port", "16-Port", "Unmanaged"), ()),
    ("Smart Plug", 20, 0.4, 0.3, ("2-Pack", "4-Pack", "Wi-Fi"), ()),
    ("Universal Remote Control", 30, 0.55, 0.4, ("Backlit", "for Smart TVs"), ()),
)

_PHONES: tuple[_T, ...] = (
    ("Phone Case", 15, 0.5, 0.15, ("Clear", "Shockproof", "with MagSafe", "Slim Fit"), (
        "Precise cutouts give full access to all buttons, ports and cameras.",
        "Raised edges protect the screen and camera lenses from scratches.",
    )),
    ("Tempered Glass Screen Protector", 9, 0.4, 0.1, ("3-Pack", "2-Pack", "Privacy"), (
        "9H hardness tempered glass resists scratches from keys and coins.",
        "Bubble-free installation with the included alignment frame.",
    )),
    ("Wireless Charging Pad", 24, 0.5, 0.3, ("15W Max", "Qi-Certified"), (
        "Charges through cases up to 5mm thick.",
    )),
    ("USB-C to USB-C Cable", 11, 0.45, 0.15, ("6 ft", "Braided", "100W", "2-Pack"), ()),
    ("Car Phone Mount", 20, 0.45, 0.4, ("Dashboard", "Air Vent", "Magnetic"), (
        "One-hand operation: place your phone in the cradle and it locks in place.",
    )),
    ("USB-C Wall Charger", 18, 0.45, 0.2, ("20W", "65W GaN", "2-Port"), (
        "Intelligent chip protects against overcharging, overheating and short circuits.",
    )),
    ("Magnetic Power Bank", 32, 0.45, 0.4, ("5000mAh", "10000mAh"), ()),
    ("Adjustable Phone Stand", 14, 0.45, 0.5, ("Aluminum", "Foldable"), ()),
    ("Bluetooth Headset", 35, 0.5, 0.1, ("with Noise Canceling Mic", "Single Ear"), ()),
    ("Selfie Stick Tripod", 22, 0.45, 0.6, ("with Wireless Remote", "Extendable"), ()),
    ("Smartwatch Band", 12, 0.45, 0.1, ("Silicone", "Stainless Steel", "42mm", "45mm"), ()),
    ("Unlocked Smartphone", 250, 0.7, 0.5, ("128GB", "256GB", "5G", "Dual SIM"), (
        "6.5-inch AMOLED display with a 120Hz refresh rate.",
        "Triple camera system with a 50MP main sensor.",
    )),
    ("Prepaid Smartphone", 60, 0.5, 0.5, ("32GB", "Locked to Carrier"), ()),
    ("Phone Camera Lens Kit", 24, 0.5, 0.3, ("3-in-1", "Wide Angle and Macro"), ()),
    ("Collapsible Phone Grip", 10, 0.35, 0.05, ("2-Pack", "Swappable Top"), ()),
    ("Waterproof Phone Pouch", 10, 0.45, 0.15, ("IPX8", "2-Pack", "with Lanyard"), ()),
    ("Cell Phone Signal Booster", 300, 0.5, 4.0, ("for Home", "Up to 5,000 sq ft"), (
        "Boosts 4G LTE and 5G signals for all U.S. carriers.",
    )),
    ("3-in-1 Charging Station", 35, 0.5, 0.8, ("for Phone, Watch and Earbuds",), ()),
    ("Anti-Dust Plugs", 3, 0.5, 0.02, ("USB-C", "10-Pack"), ()),
)

_OFFICE: tuple[_T, ...] = (
    ("Ink Cartridge", 35, 0.55, 0.3, ("Black", "Tri-Color", "High Yield", "Combo Pack"), (
        "Prints up to 600 pages with sharp black text and vivid colors.",
    )),
    ("Toner Cartridge", 70, 0.5, 2.5, ("Black", "High Yield", "2-Pack"), (
        "Page yield of approximately 3,000 pages at 5% coverage.",
    )),
    ("All-in-One Wireless Printer", 170, 0.5, 15.0, ("Color", "Duplex", "with Fax"), (
        "Print, copy, scan and fax from your smartphone or tablet.",
    )),
    ("Cross-Cut Paper Shredder", 110, 0.6, 22.0, ("12-Sheet", "8-Sheet", "with Basket"), (
        "Shreds paper, credit cards, staples and paper clips.",
    )),
    ("Label Maker", 40, 0.5, 1.2, ("Handheld", "with QWERTY Keyboard"), ()),
    ("Desktop Stapler", 15, 0.45, 1.0, ("20-Sheet Capacity", "Jam-Free"), ()),
    ("Retractable Gel Pens", 12, 0.45, 0.4, ("Fine Point", "Black Ink", "12-Pack"), (
        "Smooth, consistent ink flow for skip-free writing.",
    )),
    ("Permanent Markers", 10, 0.45, 0.3, ("Fine Point", "Assorted Colors", "24 Count"), (
        "Quick-drying ink resists fading and water.",
    )),
    ("Sticky Notes", 10, 0.45, 0.6, ("3 x 3 in", "12 Pads", "Assorted Colors"), ()),
    ("Hanging File Folders", 18, 0.4, 3.0, ("Letter Size", "25 Per Box"), ()),
    ("Three-Ring Binder", 8, 0.45, 1.0, ("1-Inch", "2-Inch", "View"), ()),
    ("Magnetic Dry Erase Board", 45, 0.5, 6.0, ("36 x 24 in", "Aluminum Frame"), ()),
    ("Mesh Desk Organizer", 22, 0.45, 2.0, ("5-Piece", "Black"), ()),
    ("Ergonomic Office Chair", 180, 0.45, 40.0, ("High Back", "Mesh", "with Lumbar Support"), (
        "Adjustable armrests, seat height and tilt tension.",
    )),
    ("Thermal Laminator", 45, 0.45, 4.0, ("9-Inch", "with Pouches"), ()),
    ("Scientific Calculator", 18, 0.4, 0.3, ("2-Line Display", "Solar Powered"), ()),
    ("Graphing Calculator", 110, 0.3, 0.6, ("Color Display", "Rechargeable"), ()),
    ("Multipurpose Copy Paper", 45, 0.45, 25.0, ("8.5 x 11", "10 Ream Case", "92 Bright"), (
        "Acid-free paper helps prevent yellowing over time.",
    )),
    ("Security Tint Envelopes", 15, 0.45, 4.0, ("#10", "500 Count", "Self-Seal"), ()),
    ("LED Desk Lamp", 35, 0.5, 2.0, ("Dimmable", "with USB Charging Port"), ()),
    ("Monitor Stand Riser", 38, 0.45, 4.0, ("with Drawer", "Bamboo"), ()),
    ("Vertical File Cabinet", 150, 0.45, 45.0, ("2-Drawer", "Locking"), ()),
    ("Dry Erase Markers", 12, 0.4, 0.4, ("Chisel Tip", "Low Odor", "12 Count"), ()),
    ("Spiral Notebook", 8, 0.5, 0.8, ("College Ruled", "5 Subject", "3-Pack"), ()),
    ("Three-Hole Punch", 15, 0.45, 2.0, ("20-Sheet Capacity",), ()),
    ("Pencil Cap Erasers", 3, 0.5, 0.1, ("Pack of 12", "Pink"), ()),
    ("Binder Clips", 4, 0.5, 0.3, ("Medium", "12 Count"), ()),
)

_TOYS: tuple[_T, ...] = (
    ("Building Set", 50, 0.8, 2.0, ("500 Pieces", "Ages 8+", "1,200 Pieces"), (
        "Step-by-step instructions make building fun for kids and adults.",
        "Compatible with other major brands of building bricks.",
    )),
    ("Action Figure", 20, 0.5, 0.5, ("6-Inch", "12-Inch", "Collector Edition"), (
        "Over 20 points of articulation for dynamic poses.",
    )),
    ("Fashion Doll", 25, 0.5, 0.8, ("with Accessories", "Playset"), ()),
    ("Strategy Board Game", 28, 0.5, 2.5, ("2-4 Players", "Ages 10+", "Family Edition"), (
        "Games take about 60 minutes and are easy to learn.",
    )),
    ("Jigsaw Puzzle", 17, 0.4, 1.6, ("1000 Pieces", "500 Pieces", "Panoramic"), (
        "Precision-cut pieces fit snugly with no puzzle dust.",
    )),
    ("Card Game", 12, 0.4, 0.4, ("Party Game", "Ages 7+"), ()),
    ("Remote Control Car", 45, 0.55, 3.0, ("1:16 Scale", "4WD", "2.4GHz"), (
        "Reaches speeds up to 25 mph with two rechargeable batteries.",
    )),
    ("Plush Toy", 18, 0.5, 0.6, ("12-Inch", "Soft", "Jumbo"), ()),
    ("Wooden Play Kitchen", 120, 0.45, 40.0, ("with Accessories", "Lights and Sounds"), ()),
    ("Ride-On Toy", 100, 0.55, 20.0, ("12V", "Battery Powered", "for Toddlers"), ()),
    ("Learning Tablet", 40, 0.45, 1.0, ("Kids", "Educational"), ()),
    ("Art Set", 25, 0.5, 2.0, ("150-Piece", "in Wooden Case"), ()),
    ("Die-Cast Vehicle Set", 20, 0.55, 1.0, ("20-Pack", "1:64 Scale"), ()),
    ("Foam Dart Blaster", 30, 0.5, 2.0, ("with 20 Darts", "Motorized"), ()),
    ("Wooden Dollhouse", 130, 0.45, 25.0, ("with Furniture", "3-Story"), ()),
    ("Kids Trampoline", 170, 0.45, 60.0, ("10 ft", "with Safety Enclosure"), ()),
    ("Kick Scooter", 60, 0.45, 7.0, ("Foldable", "Light-Up Wheels"), ()),
    ("Magnetic Tiles", 70, 0.5, 4.0, ("100 Pieces", "STEM"), (
        "Strong magnets sealed inside each tile for safe, sturdy building.",
    )),
    ("Science Experiment Kit", 30, 0.45, 2.0, ("Ages 8+", "STEM"), ()),
    ("Mini Drone", 70, 0.6, 0.8, ("with Camera", "Altitude Hold"), ()),
    ("Trading Card Booster Box", 120, 0.5, 1.5, ("36 Packs", "Sealed"), ()),
    ("Vinyl Figure", 12, 0.4, 0.3, ("3.75-Inch", "Collectible"), ()),
    ("Wooden Train Set", 60, 0.5, 6.0, ("100-Piece", "with Table"), ()),
    ("Stuffed Animal", 15, 0.45, 0.5, ("10-Inch", "Floppy"), ()),
    ("Water Table", 70, 0.4, 12.0, ("for Toddlers", "with Accessories"), ()),
    ("Speed Cube", 10, 0.45, 0.2, ("3x3", "Stickerless"), ()),
    ("Bouncy Ball", 3, 0.5, 0.1, ("Glitter", "45mm"), ()),
)

_MUSIC: tuple[_T, ...] = (
    ("Electric Guitar Strings", 8, 0.4, 0.1, ("Regular Light 10-46", "3-Pack"), (
        "Nickel-plated steel wrap wire for a bright, balanced tone.",
    )),
    ("Electric Guitar", 450, 0.55, 9.0, ("Solid Body", "Sunburst", "Black"), (
        "Alder body with a maple neck and a 25.5-inch scale length.",
        "Two humbucking pickups with a 3-way selector switch.",
    )),
    ("Acoustic Guitar", 280, 0.6, 5.5, ("Dreadnought", "Spruce Top", "Natural"), (
        "Solid spruce top produces a rich, resonant tone that improves with age.",
    )),
    ("4-String Bass Guitar", 380, 0.55, 9.5, ("Active Pickups", "Black"), ()),
    ("Guitar Combo Amplifier", 190, 0.6, 18.0, ("20 Watt", "50 Watt", "1x12"), (
        "Built-in effects include reverb, delay and chorus.",
    )),
    ("Effects Pedal", 110, 0.5, 1.0, ("Overdrive", "Delay", "True Bypass"), (
        "True bypass switching preserves your tone when the pedal is off.",
    )),
    ("Dynamic Vocal Microphone", 90, 0.5, 0.7, ("Cardioid", "with XLR Cable"), (
        "Cardioid pickup pattern isolates the main sound source and minimizes feedback.",
    )),
    ("Large-Diaphragm Condenser Microphone", 150, 0.6, 1.2, ("with Shock Mount",), ()),
    ("USB Audio Interface", 160, 0.45, 1.5, ("2-In/2-Out", "24-bit/192kHz"), (
        "Low-noise preamps with 48V phantom power for condenser microphones.",
    )),
    ("MIDI Keyboard Controller", 120, 0.55, 6.0, ("49-Key", "61-Key", "with Pads"), ()),
    ("Digital Piano", 550, 0.35, 40.0, ("88 Weighted Keys", "with Stand"), (
        "Graded hammer action keys replicate the feel of an acoustic piano.",
    )),
    ("Crash Cymbal", 180, 0.5, 2.5, ("16-Inch", "18-Inch", "Brilliant Finish"), ()),
    ("Drumsticks", 12, 0.35, 0.3, ("5A", "7A", "Wood Tip", "4 Pairs"), ()),
    ("Snare Drum", 240, 0.5, 10.0, ("14 x 5.5", "Maple Shell"), ()),
    ("Guitar Strap", 15, 0.5, 0.3, ("Leather", "Adjustable"), ()),
    ("Clip-On Chromatic Tuner", 14, 0.4, 0.1, ("for Guitar, Bass, Ukulele",), ()),
    ("Instrument Cable", 16, 0.45, 0.8, ("10 ft", "20 ft", "Right Angle"), ()),
    ("Boom Microphone Stand", 30, 0.4, 6.0, ("Tripod", "with Mic Clip"), ()),
    ("Guitar Stand", 20, 0.4, 2.0, ("Folding", "A-Frame"), ()),
    ("Studio Monitor Headphones", 90, 0.55, 0.7, ("Closed-Back", "Professional"), ()),
    ("Concert Ukulele", 70, 0.55, 2.0, ("Mahogany", "with Gig Bag"), ()),
    ("Guitar Capo", 12, 0.35, 0.1, ("Trigger Style",), ()),
    ("Guitar Picks", 6, 0.4, 0.05, ("Medium", "12-Pack", "Assorted"), ()),
    ("X-Style Keyboard Stand", 35, 0.4, 10.0, ("Double-Braced",), ()),
    ("Powered Studio Monitors", 240, 0.5, 20.0, ("5-Inch", "Pair"), ()),
    ("XLR Microphone Cable", 15, 0.45, 0.8, ("25 ft", "Balanced"), ()),
    ("Diatonic Harmonica", 30, 0.5, 0.3, ("Key of C",), ()),
    ("Single Guitar String", 2.5, 0.5, 0.02, ("Plain Steel .010", "Nickel Wound .046"), ()),
    ("Violin Outfit", 150, 0.6, 5.0, ("4/4 Full Size", "with Case and Bow"), ()),
)

_APPLIANCES: tuple[_T, ...] = (
    ("Refrigerator Water Filter", 30, 0.45, 0.8, ("1-Pack", "3-Pack", "NSF Certified"), (
        "Reduces chlorine taste and odor, lead and other contaminants.",
        "Replace every 6 months or 200 gallons for best results.",
    )),
    ("Dryer Vent Hose", 15, 0.4, 1.0, ("4-Inch x 8 ft", "Aluminum"), ()),
    ("Washer Drain Pump", 45, 0.4, 2.0, ("OEM", "Replacement"), (
        "Removes water from the tub during the drain and spin cycles.",
    )),
    ("Dryer Heating Element", 30, 0.4, 1.5, ("5400W", "Replacement"), (
        "Fixes a dryer that runs but does not heat.",
    )),
    ("Ice Maker Assembly", 90, 0.4, 3.0, ("Replacement", "OEM"), ()),
    ("Oven Bake Element", 35, 0.4, 2.0, ("Replacement",), ()),
    ("Under Cabinet Range Hood", 190, 0.5, 20.0, ("30-Inch", "Stainless Steel", "Ducted"), (
        "Three-speed blower moves up to 300 CFM of air.",
    )),
    ("Dishwasher Rack Wheel Kit", 12, 0.4, 0.3, ("8-Pack",), ()),
    ("Compact Refrigerator", 220, 0.45, 55.0, ("3.1 Cu Ft", "with Freezer"), (
        "Adjustable thermostat and reversible door for flexible placement.",
    )),
    ("Chest Freezer", 300, 0.35, 70.0, ("7.0 Cu Ft", "White"), ()),
    ("Countertop Ice Maker", 130, 0.35, 20.0, ("26 lbs per Day", "Self-Cleaning"), (
        "Makes the first batch of bullet-shaped ice in about 7 minutes.",
    )),
    ("Dual Zone Wine Cooler", 360, 0.4, 60.0, ("28 Bottle", "Freestanding"), ()),
    ("Countertop Microwave Oven", 120, 0.4, 30.0, ("1.1 Cu Ft", "1000W"), ()),
    ("Dehumidifier", 210, 0.35, 40.0, ("35 Pint", "50 Pint", "with Pump"), ()),
    ("Air Purifier Replacement Filter", 25, 0.45, 1.0, ("True HEPA", "2-Pack"), ()),
    ("Garbage Disposal", 130, 0.4, 13.0, ("3/4 HP", "Continuous Feed"), ()),
    ("Window Air Conditioner", 350, 0.35, 55.0, ("8,000 BTU", "with Remote"), ()),
    ("Dryer Drum Belt", 12, 0.35, 0.3, ("Replacement",), ()),
    ("Washer Lid Switch", 20, 0.4, 0.2, ("OEM",), ()),
    ("Refrigerator Door Shelf Bin", 30, 0.45, 1.0, ("Clear", "Replacement"), ()),
    ("Surface Burner Element", 25, 0.4, 1.0, ("6-Inch", "8-Inch"), ()),
    ("Defrost Thermostat", 18, 0.4, 0.1, ("Replacement",), ()),
    ("Water Inlet Valve", 30, 0.4, 0.6, ("Replacement",), ()),
    ("Portable Washing Machine", 260, 0.4, 60.0, ("1.6 Cu Ft", "Full-Automatic"), ()),
    ("Freestanding Electric Range", 700, 0.2, 150.0, ("30-Inch", "5.3 Cu Ft"), (
        "Self-cleaning oven with a hidden bake element.",
    )),
    ("Built-In Dishwasher", 620, 0.2, 75.0, ("24-Inch", "Stainless Steel Tub"), (
        "Quiet operation at 44 dBA with a third rack for utensils.",
    )),
)

_CATEGORIES: tuple[tuple[str, float, tuple[_T, ...]], ...] = (
    ("Automotive", 0.22, _AUTOMOTIVE),
    ("Tools_and_Home_Improvement", 0.18, _TOOLS),
    ("Electronics", 0.14, _ELECTRONICS),
    ("Toys_and_Games", 0.12, _TOYS),
    ("Cell_Phones_and_Accessories", 0.10, _PHONES),
    ("Office_Products", 0.10, _OFFICE),
    ("Musical_Instruments", 0.07, _MUSIC),
    ("Appliances", 0.07, _APPLIANCES),
)
CATEGORIES = tuple(c[0] for c in _CATEGORIES)
_CUM_WEIGHTS: list[float] = []
for _c in _CATEGORIES:
    _CUM_WEIGHTS.append((_CUM_WEIGHTS[-1] if _CUM_WEIGHTS else 0.0) + _c[1])

_BRANDS: dict[str, tuple[str, ...]] = {
    "Automotive": (
        "Delphi", "Bosch", "ACDelco", "Denso", "Motorcraft", "Dorman", "MOOG", "Monroe", "KYB",
        "Gates", "Dayco", "Fel-Pro", "NGK", "Wagner", "Raybestos", "Spectra Premium", "Cardone",
        "TYC", "Depo", "WeatherTech", "Husky Liners", "Covercraft", "Meguiar's", "Chemical Guys",
        "Thule", "CURT", "Anzo", "Standard Motor Products", "Timken", "Walker", "Duralast", "Mobil 1",
    ),
    "Tools_and_Home_Improvement": (
        "DEWALT", "Milwaukee", "Makita", "Bosch", "Ryobi", "Klein Tools", "Stanley", "IRWIN",
        "Craftsman", "Schlage", "Kwikset", "Moen", "Delta", "Kohler", "Pfister", "Philips", "Lutron",
        "Leviton", "GE", "Hampton Bay", "Honeywell", "Werner", "3M", "Husky", "WORX", "BLACK+DECKER",
        "Channellock", "Estwing", "Ecobee", "Kobalt", "Hart", "Vevor",
    ),
    "Electronics": (
        "Sony", "Samsung", "LG", "Panasonic", "JBL", "Bose", "Anker", "Logitech", "Sennheiser",
        "Audio-Technica", "Canon", "Nikon", "Garmin", "NETGEAR", "TP-Link", "Western Digital",
        "Seagate", "SanDisk", "Kingston", "Belkin", "Pioneer", "Yamaha", "Onkyo", "Roku",
        "Polk Audio", "Klipsch", "Razer", "Corsair", "Epson", "ASUS", "Acer", "Vantrue",
    ),
    "Cell_Phones_and_Accessories": (
        "OtterBox", "Spigen", "Anker", "Belkin", "ESR", "mophie", "ZAGG", "Samsung", "Motorola",
        "Nokia", "JETech", "SUPCASE", "Lamicall", "iOttie", "UGREEN", "AUKEY", "Case-Mate",
        "LifeProof", "PopSockets", "TracFone", "BLU", "Google", "Ailun", "Miracase", "TORRAS",
    ),
    "Office_Products": (
        "HP", "Canon", "Epson", "Brother", "Fellowes", "Swingline", "Avery", "Sharpie", "Pilot",
        "BIC", "Post-it", "Scotch", "Bostitch", "Smead", "Pendaflex", "Quartet", "EXPO", "Mead",
        "Five Star", "ACCO", "Casio", "Texas Instruments", "DYMO", "Paper Mate", "uni-ball",
        "Officemate", "Hammermill", "AmazonBasics", "Lorell", "Universal",
    ),
    "Toys_and_Games": (
        "LEGO", "Hasbro", "Mattel", "Fisher-Price", "Melissa & Doug", "Hot Wheels", "NERF", "Barbie",
        "Playmobil", "Ravensburger", "VTech", "LeapFrog", "Crayola", "Funko", "Spin Master",
        "Bandai", "Schleich", "Magna-Tiles", "Little Tikes", "Step2", "Radio Flyer", "Razor", "Hape",
        "KidKraft", "MEGA", "Pokémon", "Holy Stone", "National Geographic", "GiiKER", "Buffalo Games",
    ),
    "Musical_Instruments": (
        "Fender", "Gibson", "Yamaha", "Ibanez", "Epiphone", "Squier", "Martin", "Taylor",
        "D'Addario", "Ernie Ball", "Elixir", "Shure", "Audio-Technica", "Behringer", "Focusrite",
        "PreSonus", "Roland", "Korg", "Casio", "BOSS", "Electro-Harmonix", "MXR", "Zildjian",
        "Sabian", "Pearl", "Ludwig", "Vic Firth", "Hercules", "On-Stage", "Dunlop", "Snark", "Hosa",
        "Alesis", "M-Audio", "Akai Professional", "Hohner", "Kala", "Mendini",
    ),
    "Appliances": (
        "Whirlpool", "GE", "Frigidaire", "Samsung", "LG", "KitchenAid", "Bosch", "Maytag", "Kenmore",
        "Amana", "Electrolux", "Haier", "Danby", "Midea", "Broan-NuTone", "Honeywell", "Insignia",
        "EdgeStar", "Magic Chef", "EveryDrop", "Supco", "ERP", "Hamilton Beach", "Frigidaire Gallery",
        "Cosmo", "COMFEE'", "hOmeLabs", "InSinkErator",
    ),
}

_MODEL_PATTERNS = (
    "AA9999", "A99", "AAA999A9", "AA-999", "AAA9999", "99-9999", "A9999A", "AA999AA", "9999A",
    "AAA-99A", "AA99", "A-999", "AA9999-9", "999AA", "AAA99",
)
_APPLIANCE_PATTERNS = ("WP99999999", "W99999999", "DA99-99999A", "WR99X99999", "999999999", "AP9999999")

_CARS = (
    ("Honda", ("Civic", "Accord", "CR-V", "Odyssey", "Pilot")),
    ("Toyota", ("Camry", "Corolla", "RAV4", "Tacoma", "Tundra", "Sienna")),
    ("Ford", ("F-150", "Escape", "Explorer", "Focus", "Mustang", "Ranger")),
    ("Chevrolet", ("Silverado 1500", "Malibu", "Equinox", "Tahoe", "Impala", "Cruze")),
    ("Nissan", ("Altima", "Sentra", "Rogue", "Frontier")),
    ("Jeep", ("Wrangler", "Grand Cherokee", "Cherokee", "Liberty")),
    ("Dodge", ("Ram 1500", "Charger", "Durango", "Grand Caravan")),
    ("Hyundai", ("Elantra", "Sonata", "Tucson", "Santa Fe")),
    ("Kia", ("Optima", "Sorento", "Soul")),
    ("Subaru", ("Outback", "Forester", "Impreza")),
    ("GMC", ("Sierra 1500", "Yukon")),
    ("Volkswagen", ("Jetta", "Passat", "Golf")),
    ("Mazda", ("Mazda3", "CX-5")),
    ("BMW", ("328i", "X5")),
)
_PHONE_MODELS = (
    "iPhone 15 Pro Max", "iPhone 15", "iPhone 14 Pro", "iPhone 13", "iPhone 12 Mini", "iPhone SE (2022)",
    "Samsung Galaxy S23 Ultra", "Samsung Galaxy S22", "Samsung Galaxy A54 5G", "Google Pixel 8 Pro",
    "Google Pixel 7a", "Moto G Power (2022)", "OnePlus 11", "Galaxy Z Flip 5", "iPad Air 5th Generation",
)
_APPLIANCE_BRANDS = ("Whirlpool", "Kenmore", "Maytag", "KitchenAid", "Amana", "Frigidaire", "GE", "Samsung",
                     "LG")
_MATERIALS = {
    "Automotive": ("steel", "aluminum", "cast iron", "stainless steel", "rubber", "ABS plastic",
                   "polypropylene", "nylon"),
    "Tools_and_Home_Improvement": ("steel", "chrome vanadium steel", "zinc alloy", "brass", "aluminum",
                                   "fiberglass", "polycarbonate", "solid brass"),
    "Electronics": ("aluminum", "ABS plastic", "polycarbonate", "silicone", "tempered glass"),
    "Cell_Phones_and_Accessories": ("TPU", "polycarbonate", "silicone", "tempered glass", "aluminum",
                                    "vegan leather", "nylon"),
    "Office_Products": ("paper", "steel", "plastic", "polypropylene", "aluminum", "bamboo", "mesh"),
    "Toys_and_Games": ("ABS plastic", "wood", "cardboard", "polyester", "plush fabric", "die-cast metal",
                       "non-toxic plastic"),
    "Musical_Instruments": ("mahogany", "maple", "rosewood", "spruce", "nickel", "bronze", "steel",
                            "hickory", "nylon"),
    "Appliances": ("stainless steel", "plastic", "steel", "aluminum", "copper", "rubber"),
}
_COLORS = ("Black", "White", "Silver", "Gray", "Red", "Blue", "Chrome", "Satin Nickel", "Matte Black",
           "Clear", "Brown", "Green", "Navy", "Stainless Steel", "Natural", "Gold", "Rose Gold")
_ORIGINS = ("China", "USA", "Mexico", "Taiwan", "Japan", "Germany", "Vietnam", "Korea", "Canada",
            "India", "Thailand", "Malaysia", "Italy", "Indonesia")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_WARRANTIES = ("1-year", "2-year", "3-year", "5-year", "lifetime", "90-day", "limited lifetime")
_ADJS = ("Premium", "Heavy Duty", "Professional", "Upgraded", "Compact", "Classic", "Universal",
         "Original", "Deluxe", "Ultra", "Pro", "Essential", "Performance", "Genuine", "Advanced")

_CATEGORY_SENTENCES: dict[str, tuple[str, ...]] = {
    "Automotive": (
        "{brand} brings {years} years of OE heritage into each {nl}, ensuring quality and fitment.",
        "Direct replacement for the original equipment part; bolts on with no modifications.",
        "Engineered to meet or exceed OE specifications for fit, form and function.",
        "Each unit is 100% tested on the production line to ensure reliable performance.",
        "Corrosion-resistant {material} construction stands up to road salt, heat and vibration.",
        "Vehicle-specific design {compat}.",
        "Please verify fitment using your vehicle's year, make, model and engine before ordering.",
        "Includes the mounting hardware needed for a complete installation.",
        "Part Number {model}.",
        "Trusted by professional technicians in over {n2} countries.",
        "Replaces OE part numbers {oe1} and {oe2}.",
        "Installation time is about {n} hours; professional installation is recommended.",
        "Manufactured in an ISO/TS 16949 certified facility.",
    ),
    "Tools_and_Home_Improvement": (
        "Compact, lightweight design fits into tight areas.",
        "Ergonomic handle provides comfort and control during extended use.",
        "{Material} construction for durability on the jobsite and around the house.",
        "Meets or exceeds applicable ANSI standards.",
        "Finish: {color}. Designed to resist tarnishing and corrosion.",
        "UL listed for safety.",
        "Backed by a {warranty} limited warranty from {brand}.",
        "Easy installation with common household tools; step-by-step instructions included.",
        "Ideal for contractors, remodelers and DIY homeowners.",
        "Laser-etched markings are easy to read and will not wear off.",
        "{brand} has been building tools and hardware for professionals since {year}.",
        "Part of the {brand} {series} collection, so finishes match throughout the home.",
    ),
    "Electronics": (
        "Compact and portable design fits easily in a backpack or carry-on.",
        "Plug and play: no drivers or additional software required.",
        "Compatible with Windows, macOS, Chrome OS, iOS and Android devices.",
        "Durable {material} housing with a {color_l} finish.",
        "Backed by a {warranty} manufacturer warranty and friendly customer support.",
        "What's in the box: {noun}, USB cable, quick start guide.",
        "Energy efficient design with automatic standby after {n2} minutes of inactivity.",
        "Firmware updates add new features and improve performance over time.",
        "Works with Alexa and Google Assistant for hands-free voice control.",
        "Model {model} from the {brand} {series} series.",
    ),
    "Cell_Phones_and_Accessories": (
        "Designed {compat}.",
        "Slim profile fits easily in your pocket and works with wireless charging.",
        "Military-grade drop protection tested to {n} feet.",
        "Anti-fingerprint coating keeps the surface clear and smudge-free.",
        "Flexible {material} absorbs shock while resisting scratches and yellowing.",
        "Fast charging delivers up to {watts}W to compatible devices.",
        "Package includes {n} x {noun} and a user manual.",
        "{Warranty} warranty and lifetime customer support.",
        "Tested for compatibility with the latest iOS and Android updates.",
        "Lightweight and travel-friendly; perfect for commuting, road trips and the office.",
    ),
    "Office_Products": (
        "Ideal for home, school and office use.",
        "Acid-free materials keep documents safe for years.",
        "Made from {material} for everyday durability.",
        "Compatible with {printer} printers.",
        "Value pack keeps your supply closet stocked.",
        "Meets ASTM D-4236 standards for safety.",
        "Sold as {n} per pack.",
        "{brand} products have helped organize offices and classrooms since {year}.",
        "Contains {pct}% post-consumer recycled content.",
        "Backed by the {brand} {warranty} guarantee.",
    ),
    "Toys_and_Games": (
        "Great gift for birthdays, holidays and special occasions.",
        "Recommended for ages {age} years and up.",
        "Encourages creativity, problem-solving and fine motor skills.",
        "Made from non-toxic, child-safe {material}.",
        "Requires {n} AA batteries (included).",
        "Collect them all: each sold separately.",
        "WARNING: CHOKING HAZARD -- small parts. Not for children under 3 years.",
        "Includes {pieces} pieces and an illustrated instruction booklet.",
        "Perfect for family game night, sleepovers and classrooms.",
        "{brand} has been bringing joy to families since {year}.",
    ),
    "Musical_Instruments": (
        "Trusted by professional musicians on stage and in the studio.",
        "Crafted from select {material} for a warm, balanced tone.",
        "Ideal for beginners, students and working musicians alike.",
        "Roadworthy construction stands up to the rigors of touring.",
        "Includes a {warranty} warranty from {brand}.",
        "Consistent quality: every unit is inspected and set up before shipping.",
        "Lightweight and comfortable for long rehearsals and gigs.",
        "{brand} has been making musical instruments and accessories since {year}.",
        "Finish: {color}.",
    ),
    "Appliances": (
        "Genuine OEM replacement part manufactured to exact specifications.",
        "Works with {ap_brand}, {ap_brand2} and {ap_brand3} models.",
        "Replaces part numbers {oe1}, {oe2} and {oe3}.",
        "Please check your model number before ordering to ensure compatibility.",
        "Easy to install: unplug the appliance and follow the included instructions.",
        "ENERGY STAR certified to save energy and lower utility bills.",
        "Quiet operation and low vibration for use in kitchens and living spaces.",
        "Made of durable {material}; tested for quality and reliability.",
        "Backed by a {warranty} warranty on parts and labor.",
        "Dimensions: {dims} inches.",
    ),
}
_GENERIC_SENTENCES = (
    "Made from high-quality {material} for long-lasting durability.",
    "Satisfaction guaranteed: our customer service team responds to all questions within 24 hours.",
    "Designed in the USA and assembled in {origin}.",
    "Available in multiple sizes and colors to suit your needs.",
    "Easy to clean: simply wipe with a damp cloth.",
    "Lightweight and easy to store when not in use.",
    "Every unit is inspected before shipping to meet strict quality-control standards.",
    "Thousands of satisfied customers rate the {brand} {noun} 4.{d} out of 5 stars.",
    "Item weight: {weight}.",
    "Proudly serving customers for more than {years} years.",
)
_DESCRIPTIONS = (
    "The {brand} {model} {noun} combines reliable performance with thoughtful design.",
    "Upgrade to the {brand} {noun}, built to deliver dependable results every day.",
    "{brand} {noun}, model {model}.",
    "Meet the {adj_l} {nl} from {brand}: quality you can count on.",
    "Whether you are a professional or a first-timer, the {brand} {noun} makes the job easier.",
    "This {nl} is designed to perform as well as it looks.",
    "Looking for a dependable {nl}? The {brand} {model} delivers.",
)
_SERIES = ("Pro", "Elite", "Signature", "Classic", "Essentials", "Performance", "Studio", "Max", "Plus",
           "Select", "Legacy", "Modern", "Everyday", "Series X", "Advantage")

# Awkward fragments for the tricky ~3%: (kind, text). Kinds: "u" non-ASCII, "q" quotes / inch marks,
# "b" backslash, "d" dollar sign.
_TRICKY_U = (
    "Rated for -40°F to 185°F (-40°C to 85°C) operation.",
    "Designed by Müller & Söhne engineers in Stuttgart.",
    "Finish: Crème Brûlée satin with a café-au-lait accent.",
    "Ø 25 mm × 40 mm mounting pattern.",
    "Capacitance 4.7 µF ±5%.",
    "Works with Alexa™ and Google Home™ routines.",
    "Measures 5¼ × 3½ inches when folded.",
    "Certified by TÜV Rheinland · made for the Señor Frío series.",
    "Pokémon™ licensed artwork, © 2021 Nintendo.",
    "Fits ½-inch and ¾-inch fittings — no adapter needed.",
    "Noise level ≤ 45 dB at 1 m; naïve users can set it up in 5 minutes.",
)
_TRICKY_Q = (
    'Fits 12" to 16" wheels.',
    'Cut length 10-1/2" (267 mm).',
    'Labeled "Heavy Duty" on the box; reviewers call it the "best upgrade" they have made.',
    'Measures 24" x 36" and folds flat.',
    "Customers say it’s “the last one you’ll ever buy.”",
    'Includes 1/4" and 3/8" drive adapters.',
)
_TRICKY_B = (
    r"Driver path: C:\Drivers\Setup.exe (Windows only).",
    r'Stamped 1/2\" on the shank, as printed by the factory.',
    r"Item code AB\12\C as shown on the label.",
    r"Listed as RX-7\8 in some catalogs; the backslash is part of the code \ not a typo.",
)
_TRICKY_D = (
    "Includes a $10 mail-in rebate card.",
    "Compare at $49.99 in retail stores.",
    "Save $5 when you buy 2 or more.",
    "Works with over $2,000 worth of accessories.",
    "Regular price is $39.99; the sale ends soon.",
)
_TRICKY_TITLE_BITS = ('12"', '1/2"', "™", "Pro™", "Größe M", "½ Inch", "3/4\"", "Crème")


# ---------------------------------------------------------------------------------------------------
# Item generation
# ---------------------------------------------------------------------------------------------------

_REMOVALS = ("By Manufacturer", "Item", "Date First", "Package", ":", "Number of", "Best Sellers",
             "Number", "Product ")
_SCRUB_CHARS = str.maketrans({c: " " for c in ':[]"{}【】'})
_DIGIT_RE = re.compile(r"\d")


def _scrub(stuff: str) -> str:
    """The course's ``Item.scrub``: squash punctuation/whitespace and drop long words with digits.

    For the text generated here this equals the course's regex version (replace runs of
    ``:[]"{}【】`` and whitespace by one space, fix commas, then drop words of 7+ characters that
    contain a digit); it is written with ``str`` methods because ``re`` was the generation hot spot.
    """
    stuff = " ".join(stuff.translate(_SCRUB_CHARS).split())
    stuff = stuff.replace(" ,", ",").replace(",,,", ",").replace(",,", ",")
    search = _DIGIT_RE.search
    return " ".join([w for w in stuff.split(" ") if len(w) < 7 or not search(w)])


def _scrub_details(details: str) -> str:
    """The course's ``Item.scrub_details``: drop noisy phrases from the details JSON."""
    for remove in _REMOVALS:
        details = details.replace(remove, "")
    return details


class _Rng(Random):
    """``random.Random`` whose integer draws use one ``random()`` call each (``int(random() * n)``).

    The stock ``_randbelow`` loops over ``getrandbits`` in Python and dominated generation time; the
    bias of the float method is below 2**-40 for the small ranges used here. Deterministic as well.
    """

    def _randbelow(self, n: int) -> int:  # used by shuffle() and sample()
        return int(self.random() * n)

    def choice(self, seq):  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None) -> int:  # type: ignore[override]
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"


def _code(rng: Random, pattern: str) -> str:
    rand = rng.random
    return "".join([_UPPER[int(rand() * 26)] if ch == "A" else _DIGITS[int(rand() * 10)] if ch == "9"
                    else ch for ch in pattern])


def _price(rng: Random, median: float, sigma: float) -> float:
    mu = math.log(median)
    x = rng.lognormvariate(mu, sigma)
    for _ in range(3):
        if x <= MAX_PRICE:
            break
        x = rng.lognormvariate(mu, sigma)
    r = rng.random()
    if r < 0.45:
        cents = 99
    elif r < 0.55:
        cents = 95
    elif r < 0.70:
        cents = 0
    elif r < 0.75:
        cents = 49
    elif r < 0.80:
        cents = 50  # x.50 exercises round()'s half-to-even in the prompt
    else:
        cents = rng.randrange(100)
    if int(x) == 0 and cents < 50:
        cents = 99  # $0.99 rather than a pile-up at the $0.50 floor
    price = round(int(x) + cents / 100, 2)
    return min(max(price, MIN_PRICE), MAX_PRICE)


def _weight(rng: Random, lbs: float) -> tuple[float, str]:
    w = lbs * rng.lognormvariate(0.0, 0.3)
    if w < 1.0 and rng.random() < 0.7:
        return w, f"{w * 16:.1f} ounces" if w * 16 < 10 else f"{w * 16:.0f} ounces"
    return w, f"{w:.2f} pounds" if w < 10 else f"{w:.1f} pounds"


def _dims(rng: Random, w: float) -> str:
    side = max(0.6, (w * 60.0) ** (1 / 3))  # ~60 cubic inches per pound
    a = side * rng.uniform(1.0, 2.2)
    b = side * rng.uniform(0.6, 1.2)
    c = side * side * side / (a * b) * rng.uniform(0.7, 1.3)
    return " x ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in (a, b, max(c, 0.2)))


def _compat(rng: Random, category: str) -> str:
    if category == "Automotive":
        make, models = _CARS[rng.randrange(len(_CARS))]
        y1 = rng.randrange(1996, 2021)
        y2 = min(2023, y1 + rng.randrange(0, 8))
        years = str(y1) if y1 == y2 else f"{y1}-{y2}"
        return f"for {years} {make} {rng.choice(models)}"
    if category == "Cell_Phones_and_Accessories":
        return "for " + rng.choice(_PHONE_MODELS)
    if category == "Appliances":
        return "for " + ", ".join(rng.sample(_APPLIANCE_BRANDS, 2))
    return ""


def _title(rng: Random, brand: str, model: str, noun: str, quals: tuple[str, ...], compat: str,
           adj: str) -> str:
    q = rng.choice(quals) if quals else adj
    form = rng.randrange(8)
    if compat and form < 4:
        if q.startswith(("with ", "for ")):
            q = adj
        if form == 0:
            return f"{brand} {model} {noun} {compat}"
        if form == 1:
            return f"{brand} {noun} {compat}, {q}"
        if form == 2:
            return f"{brand} {q} {noun} - {model} - {compat}"
        return f"{adj} {noun} {compat} - {brand} {model}"
    if form in (0, 4):
        return f"{brand} {model} {noun}"
    if form in (1, 5):
        return f"{brand} {noun}, {q}, {model}"
    if form == 6:
        q2 = rng.choice(quals) if quals else ""
        extra = f", {q2}" if q2 and q2 != q else ""
        return f"{brand} {adj} {noun} ({q}{extra}) {model}"
    if q.startswith(("with ", "for ")):  # "Ryobi Utility Knife with 10 Blades", not "Ryobi with 10 ..."
        return f"{brand} {model} {noun} {q}" if form == 2 else f"{brand} {noun} {q} {model}"
    if form == 2:
        return f"{brand} {model} {q} {noun}"
    return f"{brand} {q} {noun} {model}"


def _details(rng: Random, category: str, brand: str, model: str, weight: str, dims: str,
             color: str, material: str, compat: str) -> dict[str, str]:
    d: dict[str, str] = {}
    if rng.random() < 0.8:
        d["Manufacturer"] = brand
    d["Brand"] = brand
    d["Item Weight"] = weight
    d["Product Dimensions"] = f"{dims} inches"
    if rng.random() < 0.75:
        d["Item model number"] = model
    if rng.random() < 0.5:
        d["Color"] = color
    if rng.random() < 0.4:
        d["Material"] = material[:1].upper() + material[1:]
    if category == "Automotive":
        if rng.random() < 0.6:
            d["Manufacturer Part Number"] = model
        if rng.random() < 0.4:
            d["OEM Part Number"] = _code(rng, "99999-AAA-A99")
        if rng.random() < 0.5:
            d["Vehicle Service Type"] = rng.choice(("Car, Truck", "Passenger Car", "SUV, Truck, Van"))
        if rng.random() < 0.3:
            d["Exterior"] = rng.choice(("Machined", "Painted", "Polished", "Powder Coated"))
    elif category == "Electronics":
        d["Connectivity Technology"] = rng.choice(("Bluetooth", "USB", "Wi-Fi", "HDMI", "Wired"))
        if rng.random() < 0.5:
            d["Power Source"] = rng.choice(("Battery Powered", "Corded Electric", "USB"))
    elif category == "Cell_Phones_and_Accessories":
        if compat:
            d["Compatible Phone Models"] = compat[4:]
        d["Form Factor"] = rng.choice(("Case", "Cable", "Mount", "Charger", "Bar", "Stand"))
    elif category == "Toys_and_Games":
        d["Manufacturer recommended age"] = f"{rng.choice((3, 4, 5, 6, 8, 10, 12, 14))} years and up"
        if rng.random() < 0.5:
            d["Number of Pieces"] = str(rng.randrange(1, 1500))
    elif category == "Musical_Instruments":
        if rng.random() < 0.5:
            d["Body Material"] = material[:1].upper() + material[1:]
        if rng.random() < 0.3:
            d["Hand Orientation"] = rng.choice(("Right", "Left"))
    elif category == "Appliances":
        d["Part Number"] = model
        if rng.random() < 0.5:
            d["Installation Type"] = rng.choice(("Freestanding", "Built-In", "Countertop", "Replacement"))
    elif category == "Office_Products":
        if rng.random() < 0.5:
            d["Number of Items"] = str(rng.choice((1, 2, 3, 5, 10, 12, 24, 50, 100)))
        if rng.random() < 0.3:
            d["Sheet Size"] = rng.choice(("8.5 x 11", "Letter", "Legal", "A4"))
    if rng.random() < 0.6:
        d["Country of Origin"] = rng.choice(_ORIGINS)
    if rng.random() < 0.3:
        d["Is Discontinued By Manufacturer"] = "No"
    if rng.random() < 0.3:
        d["Batteries Included?"] = rng.choice(("No", "Yes"))
    d["Date First Available"] = f"{rng.choice(_MONTHS)} {rng.randrange(1, 29)}, {rng.randrange(2004, 2024)}"
    return d


class _Slots(dict):
    """Template values for feature sentences; random ones are drawn only when a template uses them."""

    def __init__(self, rng: Random, category: str, compat: str) -> None:
        super().__init__()
        self._rng = rng
        self._category = category
        self._compat = compat

    def __missing__(self, key: str) -> Any:
        rng = self._rng
        if key == "compat":
            value: Any = self._compat or "for most standard applications"
        elif key in ("n", "n2", "years", "year", "pct", "pieces", "d"):
            lo, hi = _SLOT_RANGES[key]
            value = rng.randrange(lo, hi)
        elif key in ("oe1", "oe2", "oe3"):
            value = _code(rng, rng.choice(("AA9999", "9999AA", "A99999", "AAA9999")))
        elif key in ("ap_brand", "ap_brand2", "ap_brand3"):
            brands = rng.sample(_APPLIANCE_BRANDS, 3)
            self.update(ap_brand=brands[0], ap_brand2=brands[1], ap_brand3=brands[2])
            return self[key]
        elif key == "Warranty":
            value = rng.choice(_WARRANTIES).capitalize()
        else:
            value = rng.choice(_SLOT_CHOICES[key])
        self[key] = value
        return value


_SLOT_RANGES = {"n": (2, 7), "n2": (10, 60), "years": (20, 110), "year": (1890, 2012), "pct": (10, 100),
                "pieces": (12, 1200), "d": (2, 9)}
_SLOT_CHOICES: dict[str, tuple[Any, ...]] = {
    "warranty": _WARRANTIES,
    "origin": _ORIGINS,
    "watts": (10, 15, 18, 20, 25, 30, 45, 65),
    "age": (3, 4, 5, 6, 8, 10),
    "series": _SERIES,
    "printer": ("HP OfficeJet Pro", "Canon PIXMA", "Brother HL-L2350DW", "Epson WorkForce"),
}


def _make_item(rng: Random) -> dict[str, Any]:
    r = rng.random() * _CUM_WEIGHTS[-1]
    cat_name, _w, types = _CATEGORIES[bisect.bisect_right(_CUM_WEIGHTS, r)]
    noun, median, sigma, lbs, quals, type_feats = types[rng.randrange(len(types))]
    brands = _BRANDS[cat_name]
    brand = brands[rng.randrange(len(brands))]
    if cat_name == "Appliances" and rng.random() < 0.6:
        model = _code(rng, rng.choice(_APPLIANCE_PATTERNS))
    else:
        model = _code(rng, _MODEL_PATTERNS[rng.randrange(len(_MODEL_PATTERNS))])
    tricky = rng.random() < TRICKY_RATE
    price = _price(rng, median, sigma)
    compat = _compat(rng, cat_name) if cat_name in ("Automotive", "Cell_Phones_and_Accessories",
                                                   "Appliances") and rng.random() < 0.7 else ""
    adj = rng.choice(_ADJS)
    title = _title(rng, brand, model, noun, quals, compat, adj)
    if tricky and rng.random() < 0.5:
        title = f"{title} {rng.choice(_TRICKY_TITLE_BITS)}"
    weight_lbs, weight = _weight(rng, lbs)
    dims = _dims(rng, weight_lbs)
    color = rng.choice(_COLORS)
    material = rng.choice(_MATERIALS[cat_name])

    slots = _Slots(rng, cat_name, compat)
    slots.update(brand=brand, noun=noun, nl=noun.lower(), model=model, material=material,
                 Material=material[:1].upper() + material[1:], color=color, color_l=color.lower(),
                 weight=weight, dims=dims, adj_l=adj.lower())

    # Details first: the course appends them after description and features, so their length decides
    # how many feature sentences fit before the ~160-token cut.
    has_details = rng.random() >= 0.02
    details_obj = _details(rng, cat_name, brand, model, weight, dims, color, material, compat)
    if tricky:
        details_obj["Note"] = rng.choice(_TRICKY_Q) + "\n" + rng.choice(_TRICKY_U)
    if not has_details:
        details = None
    elif tricky:
        details = json.dumps(details_obj, ensure_ascii=False, indent=2)  # real newlines inside
    else:
        details = json.dumps(details_obj, ensure_ascii=False)
    scrubbed_details = _scrub_details(details) if details is not None and not tricky else ""

    title_text = title if tricky else (_scrub(title) or title)
    target = int(min(930.0, max(230.0, rng.gauss(535.0, 140.0))))  # length of text (title + body)
    room = max(80, target - len(title_text) - 1)
    budget = max(0.35 * room, room - rng.uniform(0.15, 1.0) * len(scrubbed_details))

    # Features: a lazy partial shuffle of type- and category-specific sentences, then generic ones.
    pool = list(type_feats) + list(_CATEGORY_SENTENCES[cat_name])
    parts = [rng.choice(_DESCRIPTIONS).format_map(slots)]
    size = len(parts[0])
    j = 0
    while j < len(pool) and size < budget:
        k = rng.randrange(j, len(pool))
        pool[j], pool[k] = pool[k], pool[j]
        sentence = pool[j].format_map(slots)
        parts.append(sentence)
        size += len(sentence) + 1
        j += 1
    contents = "\n".join(parts) + "\n"
    if scrubbed_details:
        contents += scrubbed_details + "\n"
    # Pad short texts with what is left (the course drops items under 150 tokens).
    if len(contents) < room + 40:
        extra = pool[j:] + rng.sample(_GENERIC_SENTENCES, 4)
        for sentence in extra:
            contents += sentence.format_map(slots) + "\n"
            if len(contents) >= room + 40:
                break
    body = _scrub(contents)
    if tricky:
        bits = [rng.choice(_TRICKY_U)]
        if rng.random() < 0.7:
            bits.append(rng.choice(_TRICKY_Q))
        if rng.random() < 0.6:
            bits.append(rng.choice(_TRICKY_B))
        if rng.random() < 0.7:
            bits.append(rng.choice(_TRICKY_D))
        rng.shuffle(bits)
        cut = body.find(". ") + 2 if ". " in body else 0
        inserted = " ".join(bits) + " "
        body = body[:cut] + inserted + body[cut:]
        room = max(room, cut + len(inserted) + 40)
    if len(body) > room:
        cut_at = body.rfind(" ", 0, room)
        body = body[: cut_at if cut_at > room // 2 else room].rstrip(" ,;")
    text = f"{title_text}\n{body}"
    prompt = make_prompt(text, price)
    return {
        "title": title,
        "price": price,
        "details": details,
        "prompt": prompt,
        "token_count": max(1, round(len(prompt) / 4)),
        "include": True,
        "category": cat_name,
    }


def generate_items(n: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    """Yield ``n`` course-shaped items as dicts with the keys of :data:`FIELDS`.

    Item ``i`` is drawn from its own ``random.Random`` seeded by ``(seed, i)``, so it does not depend
    on ``n``: ``list(generate_items(600))`` is a prefix of ``list(generate_items(400_000))``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = _Rng()
    base = (int(seed) % (1 << 64)) << 64
    for i in range(n):
        rng.seed(base | i)
        yield _make_item(rng)


# ---------------------------------------------------------------------------------------------------
# Streaming protocol-4 pickle writer
# ---------------------------------------------------------------------------------------------------

_FRAME_SIZE_TARGET = 64 * 1024
_FRAME_SIZE_MIN = 4
_BATCHSIZE = 1000
_PACK_Q = struct.Struct("<Q").pack
_PACK_I = struct.Struct("<I").pack
_PACK_i = struct.Struct("<i").pack
_PACK_D = struct.Struct(">d").pack
_SHARED_VALUE_FIELDS = frozenset({"category"})


class _StreamPickler:
    """Writes ``pickle.dumps(list_of_items, protocol=4)``-identical bytes without building the list.

    It mirrors CPython's C pickler for exactly the shapes used here: a list of objects of the global
    ``items.Item`` whose state is a dict of str keys and str/float/int/bool/None values. Dict keys and
    ``category`` values are memoized and shared (they are the same string objects in the course data);
    other strings are written in full each time, as distinct objects are. Frames are flushed to the
    file as soon as they are complete, so memory stays flat.
    """

    def __init__(self, file: BinaryIO, module: str = "items", name: str = "Item") -> None:
        self._file = file
        self._frame = bytearray()
        self._memo_len = 0
        self._shared: dict[str, int] = {}
        self._cls_idx: int | None = None
        self._module = module
        self._name = name

    # -- framing (C pickler: a frame is committed at the start of save() once it reaches 64 KiB) --
    def _boundary(self) -> None:
        if len(self._frame) >= _FRAME_SIZE_TARGET:
            self._commit()

    def _commit(self) -> None:
        frame = self._frame
        if len(frame) >= _FRAME_SIZE_MIN:
            self._file.write(pickle.FRAME + _PACK_Q(len(frame)))
        self._file.write(frame)
        frame.clear()

    # -- primitives --
    def _memoize(self) -> int:
        self._frame += pickle.MEMOIZE
        idx = self._memo_len
        self._memo_len += 1
        return idx

    def _get(self, idx: int) -> None:
        if idx < 256:
            self._frame += pickle.BINGET + bytes((idx,))
        else:
            self._frame += pickle.LONG_BINGET + _PACK_I(idx)

    def _str(self, s: str) -> None:
        data = s.encode("utf-8", "surrogatepass")
        n = len(data)
        if n < 256:
            self._frame += pickle.SHORT_BINUNICODE + bytes((n,))
        elif n <= 0xFFFFFFFF:
            self._frame += pickle.BINUNICODE + _PACK_I(n)
        else:  # pragma: no cover - never happens for generated items
            self._frame += pickle.BINUNICODE8 + _PACK_Q(n)
        self._frame += data
        self._memoize()

    def _shared_str(self, s: str) -> None:
        idx = self._shared.get(s)
        if idx is None:
            self._str(s)
            self._shared[s] = self._memo_len - 1
        else:
            self._get(idx)

    def _value(self, v: Any) -> None:
        if v is None:
            self._frame += pickle.NONE
        elif v is True:
            self._frame += pickle.NEWTRUE
        elif v is False:
            self._frame += pickle.NEWFALSE
        elif type(v) is int:
            if 0 <= v < 256:
                self._frame += pickle.BININT1 + bytes((v,))
            elif 0 <= v < 65536:
                self._frame += pickle.BININT2 + v.to_bytes(2, "little")
            elif -0x80000000 <= v <= 0x7FFFFFFF:
                self._frame += pickle.BININT + _PACK_i(v)
            else:
                data = pickle.encode_long(v)
                if len(data) < 256:
                    self._frame += pickle.LONG1 + bytes((len(data),)) + data
                else:
                    self._frame += pickle.LONG4 + _PACK_i(len(data)) + data
        elif type(v) is float:
            self._frame += pickle.BINFLOAT + _PACK_D(v)
        elif type(v) is str:
            self._str(v)
        else:
            raise TypeError(f"cannot encode {type(v).__name__} in an item")

    # -- structure --
    def _class(self) -> None:
        if self._cls_idx is not None:
            self._get(self._cls_idx)
            return
        self._boundary()
        self._shared_str(self._module)
        self._boundary()
        self._shared_str(self._name)
        self._frame += pickle.STACK_GLOBAL
        self._cls_idx = self._memoize()

    def _item(self, attrs: Mapping[str, Any]) -> None:
        self._boundary()  # save(item)
        self._boundary()  # save(cls)
        self._class()
        self._boundary()  # save(())
        self._frame += pickle.EMPTY_TUPLE + pickle.NEWOBJ
        self._memoize()
        self._boundary()  # save(state)
        self._frame += pickle.EMPTY_DICT
        self._memoize()
        if not attrs:
            pass
        elif len(attrs) == 1:
            ((k, v),) = attrs.items()
            self._boundary()
            self._shared_str(k)
            self._boundary()
            self._attr(k, v)
            self._frame += pickle.SETITEM
        else:
            self._frame += pickle.MARK
            for k, v in attrs.items():
                self._boundary()
                self._shared_str(k)
                self._boundary()
                self._attr(k, v)
            self._frame += pickle.SETITEMS
        self._frame += pickle.BUILD

    def _attr(self, key: str, v: Any) -> None:
        if key in _SHARED_VALUE_FIELDS and type(v) is str:
            self._shared_str(v)
        else:
            self._value(v)

    def dump(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Write the whole pickle (PROTO .. STOP) for ``items``; return how many were written."""
        self._file.write(pickle.PROTO + bytes((4,)))
        self._boundary()  # save(list)
        self._frame += pickle.EMPTY_LIST
        self._memoize()
        count = 0
        in_batch = 0
        for attrs in items:
            if in_batch == 0:
                self._frame += pickle.MARK
            self._item(attrs)
            count += 1
            in_batch += 1
            if in_batch == _BATCHSIZE:
                self._frame += pickle.APPENDS
                in_batch = 0
        if in_batch:
            self._frame += pickle.APPENDS
        self._frame += pickle.STOP
        self._commit()
        return count


def write_pickle(path: str | os.PathLike[str], n: int, seed: int = 42) -> int:
    """Write ``generate_items(n, seed)`` as a pickled list of ``items.Item``; return ``n``.

    The file is streamed to a temporary file next to ``path`` and moved into place with
    :func:`os.replace`, so readers never see a partial pickle. Output is byte-identical for the same
    ``(n, seed)``. Parent directories must exist (the CLI creates them).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            count = _StreamPickler(f).dump(generate_items(n, seed))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return count


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ftprep.sample",
        description="Write a deterministic pickle of course-shaped product items (a list of items.Item).",
    )
    parser.add_argument("--n", type=int, default=600, help="number of items (default: 600)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--out", type=Path, default=Path("data/sample/items.pkl"),
                        help="output pickle (default: data/sample/items.pkl)")
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("--n must be >= 0")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = write_pickle(args.out, args.n, args.seed)
    size = args.out.stat().st_size
    print(f"wrote {count:,} items (seed {args.seed}) to {args.out} ({_human(size)}, {size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
