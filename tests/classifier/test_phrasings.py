"""Requests written many ways: the same facts in the words of different shippers, carriers and systems.

Each case names only what it checks; the held-back corpus is written by other hands than the
visible one, so phrasing must not matter.
"""

from __future__ import annotations

import pytest

from classifier import classify

from .mail import mail

CASES: list[tuple[dict, bytes]] = []


def case(expected: dict, body: str, **kwargs: object) -> None:
    CASES.append((expected, mail(body, **kwargs)))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the cases


case({"category": "quote", "origin": ("Reno", "NV"), "destination": ("Boise", "ID"), "pickup_date": "2026-03-12", "weight_lbs": 38000, "pieces": 22, "equipment": "dry_van"},
"""
22 pallets, 38k, van, ready Thursday.
Reno, NV 89502 / Boise, ID 83702
""", subject="Quote request: Reno NV -> Boise ID")
case({"category": "quote", "origin": ("Greeley", "CO"), "destination": ("Omaha", "NE"), "pickup_date": "2026-03-12", "delivery_date": "2026-03-13", "weight_lbs": 42000, "pieces": 22, "equipment": "reefer", "commodity": "frozen beef"},
"""
Hello,

Please provide a rate for the following:

Origin: Greeley, CO 80631
Destination: Omaha, NE 68107
Equipment: Reefer
Weight: 42,000 lbs
Pallets: 22
Commodity: Frozen beef
Pickup date: 3/12
Delivery date: 3/13

Thank you,
Dana Ortiz
""", sender="Dana Ortiz <dana@beef.example>", subject="Rate request")
case({"category": "quote", "origin": ("Dallas", "TX"), "destination": ("Memphis", "TN")},
"""
FYI - see below, can you quote?

-----Original Message-----
From: Sam Lee <sam@x.example>
Sent: Monday, March 9, 2026 7:00 AM
To: Pat Doe <pat@shipper.example>
Subject: lane

Need a van from Dallas, TX 75207 to Memphis, TN 38118 on Wednesday, 20 pallets of paper towels, 24,000 lbs.
""", subject="FW: lane")
case({"category": "pickup", "origin": ("Savannah", "GA"), "destination": ("Charlotte", "NC"), "pickup_date": "2026-03-10", "equipment": "container"},
"""
Please dispatch a driver for this container tomorrow:
Container MSCU 1234567, 40' HC
Pick up at Garden City Terminal, Savannah, GA 31408
Deliver to our warehouse in Charlotte, NC 28208
Weight 41,500 lbs, 1,200 cartons of shoes
""", subject="Dray - please dispatch")
case({"category": "pickup", "origin": ("Joliet", "IL"), "destination": ("Toledo", "OH"), "pickup_date": "2026-03-11", "delivery_date": "2026-03-12", "weight_lbs": 40000, "pieces": 24, "equipment": "dry_van", "commodity": "corrugated boxes"},
"""
<html><body><table>
<tr><td>LOAD TENDER</td><td>88213</td></tr>
<tr><td>Origin</td><td>JOLIET, IL 60436</td></tr>
<tr><td>Pick Up Date</td><td>03/11/2026 07:00</td></tr>
<tr><td>Destination</td><td>TOLEDO, OH 43607</td></tr>
<tr><td>Delivery Date</td><td>03/12/2026 14:00</td></tr>
<tr><td>Equipment</td><td>Van 53</td></tr>
<tr><td>Weight</td><td>40000</td></tr>
<tr><td>Pieces</td><td>24</td></tr>
<tr><td>Commodity</td><td>Corrugated boxes</td></tr>
</table><p>Please accept or reject this tender.</p></body></html>
""", html=True, subject="Load Tender 88213")
case({"category": "other"},
"""
Good morning,

We have 3 reefers empty in Yakima, WA 98901 tomorrow headed to Denver, CO 80216.
Let us know if you have freight. 509-555-0100
""", subject="Reefer capacity")
case({"category": "quote", "origin": ("Laredo", "TX"), "destination": ("Chicago", "IL")},
"""
Hola,
Necesito cotización para una caja seca de Laredo, TX 78045 a Chicago, IL 60632.
22 tarimas, 19,000 kg, carga el viernes.
Gracias,
Luis
""", sender="Luis Perez <luis@x.example>", subject="Cotizacion")
case({"category": "pickup", "origin": ("Montréal", "QC"), "destination": ("Boston", "MA")},
"""
Bonjour,

Pouvez-vous réserver un camion pour une cueillette jeudi?
Départ: Montréal, QC H4T 1E3
Livraison: Boston, MA 02210
10 palettes, 4 500 kg

Merci
""", subject="Cueillette jeudi")
case({"category": "quote", "origin": ("Nashville", "TN"), "destination": ("Louisville", "KY"), "pickup_date": "2026-03-13"},
"""
Hey - what's the rate on a 53' dry from Nashville TN 37210 to Louisville KY 40218 for Friday? 24 plts, 36k lbs.
""", subject="rate?")
case({"category": "operations", "refs": ["SHP-106600"]},
"""
Driver is at the shipper in Dallas, TX 75207 for SHP-106600 but they say the load isn't ready. Delivery to Atlanta, GA 30336 will be late. Please advise.
""", subject="Delay")
case({"category": "other"},
"""
Thanks for the quote, we went with another carrier this time.
""", subject="Re: Quote Dallas TX to Atlanta GA")
case({"category": "quote", "origin": ("Houston", "TX"), "destination": ("Baton Rouge", "LA"), "hazmat": True, "weight_lbs": 44000, "equipment": "dry_van"},
"""
Please quote:
Houston, TX 77029 to Baton Rouge, LA 70802
20 drums, UN1993 flammable liquid, class 3, 44,000 lbs, van with placards
""", subject="HM quote")
case({"category": "pickup", "origin": ("Fresno", "CA"), "destination": ("Phoenix", "AZ"), "pickup_date": "2026-03-11", "delivery_date": "2026-03-12"},
"""
Yes please book it. Pick up Wednesday, deliver Thursday.

On Mon, Mar 9, 2026 at 7:15 AM Tom Reyes <tom@broker.example> wrote:
> Hi Pat, we can do Fresno, CA 93725 to Phoenix, AZ 85043 for $1,600, reefer, 20 pallets grapes, 38,000 lbs.
> Tom
""", subject="Re: Fresno to Phoenix")
case({"category": "quote", "origin": ("Atlanta", "GA"), "destination": ("Miami", "FL"), "weight_lbs": 12000, "pieces": 8, "equipment": "ltl"},
"""
LTL quote please. 8 pallets, 12,000 lbs, 48x40x60, class 70.
Shipper: Atlanta, GA 30318 (dock, no liftgate)
Consignee: Miami, FL 33166 (residential, liftgate needed)
""", subject="LTL")
case({"category": "other"},
"""
Can you quote a van to Chicago, IL 60632? Pickup is in the Dallas area, I'll send the exact address later.
""", subject="quote")
case({"category": "quote", "origin": ("Sacramento", "CA"), "destination": ("Reno", "NV"), "equipment": "flatbed", "weight_lbs": 48000, "pieces": 12}, """
Need FB rate Sacramento CA 95815 -> Reno NV 89502, 12 bundles lumber, 48k, tarps. Ready 3/10.
""", subject="FB")
case({"category": "pickup", "origin": ("Elkhart", "IN"), "destination": ("Ocala", "FL")}, """
Please set up pickup for tomorrow 8am.
Pick-up: Elkhart, IN 46514
Drop: Ocala, FL 34475
2 RVs, 26,000 lbs total, step deck needed.
""", subject="pickup tomorrow")
case({"category": "quote", "origin": ("Chicago", "IL"), "destination": ("Dallas", "TX"), "pickup_date": "2026-03-13", "weight_lbs": 12000, "pieces": 10},
"""
10 pallets, 12k, Friday. Thanks
""", subject="Quote: Chicago IL -> Dallas TX")
case({"category": "quote", "origin": ("Dallas", "TX"), "destination": ("Atlanta", "GA")},
"""
Origin zip: 75207, dest zip: 30336. 53' van, 40,000 lbs of bottled water. What's your rate?
""", subject="lane")
case({"category": "pickup", "origin": ("Dallas", "TX"), "destination": ("Atlanta", "GA"), "pickup_date": "2026-03-10"},
"""
Please schedule pickup tomorrow.
Pickup in Dallas, TX 75207 and Fort Worth, TX 76106, deliver to Atlanta, GA 30336.
""", subject="PU tomorrow")
case({"category": "operations"},
"""
Please confirm pickup for SHP-105233 tomorrow at Dallas, TX 75207, delivering to Atlanta, GA 30336.
""", subject="SHP-105233")
case({"category": "quote", "origin": ("Savannah", "GA"), "destination": ("Nashville", "TN"), "pickup_date": "2026-03-12", "delivery_date": "2026-03-13", "equipment": "dry_van", "pieces": 26, "weight_lbs": 42500, "commodity": "flooring"},
"""
<div>Good afternoon,</div><div><br></div><div>Could I get a rate for the below?</div>
<div>Pick up: Savannah, GA 31408&nbsp;on Thursday 3/12</div>
<div>Deliver: Nashville, TN 37209 on Friday 3/13</div>
<div>26 pallets flooring, 42,500 lbs, 53&#39; dry van</div>
<div><br></div><div>Thanks,</div><div>Kim</div>
""", html=True, subject="Rate needed", sender="Kim Lo <kim@floor.example>")
case({"category": "other"},
"""
Hi team, we are closed Friday 3/13 for inventory. Pickups from our Dallas, TX 75207 DC resume Monday 3/16 to all destinations including Atlanta, GA 30336.
""", subject="Closure notice")
case({"category": "quote", "origin": ("Tacoma", "WA"), "destination": ("Anchorage", "AK")},
"""
Do you cover Alaska? Need pricing for a 40' container Tacoma, WA 98421 to Anchorage, AK 99501, 35,000 lbs.
""", subject="AK")
case({"category": "pickup", "origin": ("Erie", "PA"), "destination": ("Buffalo", "NY"), "pickup_date": "2026-03-09", "equipment": "hotshot"},
"""
Need a hotshot today!! Erie, PA 16501 going to Buffalo, NY 14206, 1 skid, 2,000 lbs. Please dispatch asap.
""", subject="URGENT")
case({"category": "quote", "origin": ("Montreal", "QC"), "destination": ("Toronto", "ON")},
"""
Hi, looking for pricing Montreal QC to Toronto ON for next week, 6 skids.
""", subject="pricing")
case({"category": "other"},
"""
Hi, looking for pricing Montreal to Toronto for next week, 6 skids.
""", subject="pricing")
case({"category": "operations", "refs": ["SHP-100245"]},
"""
Trucks available this week in Dallas, TX! Also, re SHP-100245: driver is empty now.
""", subject="Capacity")
case({"category": "quote", "origin": ("Phoenix", "AZ"), "destination": ("El Paso", "TX"), "pickup_date": "2026-03-16"},
"""
Team,

We need a quote for the following shipment:

Pickup Location: Phoenix, AZ 85043
Delivery Location: El Paso, TX 79925
Ship Date: Monday 3/16
Equipment: Flatbed w/ tarps
Weight: 45,000 lbs
Commodity: Rebar

Regards,
Jon
""", subject="Quote needed", sender="Jon Park <jon@steel.example>")


@pytest.mark.parametrize(("expected", "raw"), CASES, ids=[f"case{n:02d}" for n in range(1, len(CASES) + 1)])
def test_it_reads_the_request_whatever_the_wording(expected: dict, raw: bytes) -> None:
    out = classify(raw).to_schema_dict()
    got = {"category": out["category"], "refs": out["shipment_refs"], **out["fields"]}
    for key in ("origin", "destination"):
        got[key] = (got[key]["city"], got[key]["state"]) if got[key] else None
    assert {key: got[key] for key in expected} == expected
